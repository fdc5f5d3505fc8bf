"""A private ``redis-server`` for tests: own free port, own temp dir, stopped by pid file.

The machine's own Redis (if any) is never touched: every instance gets a fresh port
and directory, persistence is off, and ``stop`` signals exactly the pid the server
wrote to its pid file. Use it as a context manager or a pytest fixture::

    with redis_server() as server:
        client = redis.Redis.from_url(server.url)

Set ``REDIS_URL`` in the environment to use an existing server instead (CI with a
service container); then nothing is started or stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from alpha_panda.domain.errors import ConfigurationError, TransientError

__all__ = ["RedisServer", "free_port", "redis_server", "shared_redis", "start_redis_server"]

_shared: RedisServer | None = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(host: str, port: int) -> bool:
    """True when a Redis server answers PING on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A running redis-server. ``pid_file`` is None for an external server (``REDIS_URL``)."""

    host: str
    port: int
    directory: Path | None = None
    pid_file: Path | None = None
    external_url: str | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0."""
        return self.external_url or f"redis://{self.host}:{self.port}/0"

    def pid(self) -> int | None:
        """The server's pid from its pid file, if it is still there."""
        if self.pid_file is None or not self.pid_file.exists():
            return None
        text = self.pid_file.read_text().strip()
        return int(text) if text else None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory. Idempotent."""
        if self._stopped or self.external_url is not None:
            return
        self._stopped = True
        pid = self.pid()
        if pid is not None:
            _terminate(pid, timeout)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as gone: the daemon was re-parented and
    whoever reaps it may be slow to do so."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_redis_server(*, timeout: float = 10.0, attempts: int = 3) -> RedisServer:
    """Start a daemonized redis-server on a free port; return once it answers PING.

    Retries on another port if the chosen one was taken in the meantime. Raises
    ``ConfigurationError`` when ``redis-server`` is not installed and ``TransientError``
    when it does not come up in ``timeout`` seconds.
    """
    external = os.environ.get("REDIS_URL")
    if external:
        return RedisServer(host="", port=0, external_url=external)
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigurationError(
            "redis-server is not installed: apt-get install -y --no-install-recommends redis-server"
        )
    last_error = ""
    for _ in range(attempts):
        directory = Path(tempfile.mkdtemp(prefix="alpha-panda-redis-"))
        port = free_port()
        server = RedisServer("127.0.0.1", port, directory, directory / "redis.pid")
        cmd = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
            "--pidfile", str(server.pid_file), "--dir", str(directory), "--save", "",
            "--appendonly", "no", "--logfile", str(directory / "redis.log"),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        deadline = time.monotonic() + timeout
        while result.returncode == 0 and time.monotonic() < deadline:
            if _ping(server.host, port) and server.pid() is not None:
                return server
            time.sleep(0.02)
        log = directory / "redis.log"
        last_error = (log.read_text() if log.exists() else "") or result.stderr
        server.stop()
    raise TransientError(f"redis-server did not start after {attempts} attempts: {last_error[-500:]}")


@contextlib.contextmanager
def redis_server(*, timeout: float = 10.0) -> Iterator[RedisServer]:
    """A private redis-server for the duration of the ``with`` block."""
    server = start_redis_server(timeout=timeout)
    try:
        yield server
    finally:
        server.stop()


def shared_redis() -> RedisServer:
    """One redis-server for the whole test process, started on first use, stopped at exit.

    Tests sharing it must use unique key prefixes (or flush what they wrote)."""
    global _shared
    if _shared is None or _shared._stopped:
        _shared = start_redis_server()
        atexit.register(_shared.stop)
    return _shared
