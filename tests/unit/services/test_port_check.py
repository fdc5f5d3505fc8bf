"""The API port check: a port left in TIME_WAIT by the last run is free, a listened one is not."""

from __future__ import annotations

import socket

import pytest

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.services.api_server import check_port_free


def _port_in_time_wait() -> int:
    """A loopback port whose server side closed a connection first: the state a run leaves
    behind when Ctrl-C stops it while the dashboard is connected."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its end goes to TIME_WAIT
        client.close()
    return int(port)


def test_a_port_left_in_time_wait_by_the_last_run_is_free() -> None:
    port = _port_in_time_wait()
    # What the check did before (a plain bind) fails here:
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    check_port_free("127.0.0.1", port)


def test_a_port_another_process_listens_on_is_in_use() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"port {port} .* is in use"):
            check_port_free("127.0.0.1", port)


@pytest.mark.parametrize(("host", "reason"), [
    ("999.1.1.1", "Name or service not known"),  # not an address, nor a name
    ("192.0.2.1", "Cannot assign requested address"),  # TEST-NET-1: not this machine's
])
def test_a_host_that_is_not_this_machines_is_not_said_to_be_in_use(host: str, reason: str) -> None:
    # `run --host 10.9.9.9` said "port 8000 on 10.9.9.9 is in use (Cannot assign requested
    # address); pass --port N": no port would have done
    with pytest.raises(ConfigurationError) as err:
        check_port_free(host, 8841)
    assert str(err.value) == (
        f"cannot listen on {host} port 8841: {reason}; pass --host (an address of this "
        "machine: 127.0.0.1, or 0.0.0.0 for all), --port N or --no-api")
