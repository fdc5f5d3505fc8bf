"""The fake Kite on ports a trader chooses (to point a running Alpha Panda at it), and a
clear error when one is taken."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from alpha_panda.testing.fake_kite import FakeKite
from alpha_panda.testing.redis_server import free_port


def test_it_listens_where_it_is_told() -> None:
    port, ws_port = free_port(), free_port()
    kite = FakeKite().start(port, ws_port)
    try:
        assert (kite.root_url, kite.ws_url) == (f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{ws_port}")
    finally:
        kite.stop()


def test_a_taken_port_is_an_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            FakeKite().start(free_port(), port)
        done = subprocess.run([sys.executable, "-m", "alpha_panda.testing.fake_kite", "--port",
                               str(port), "--tick-interval", "0"],
                              check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stderr.startswith("fake Kite: ")
