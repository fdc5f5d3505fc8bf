"""A private PostgreSQL server for tests: own free port, own temp dir, stopped by data dir.

The machine's own PostgreSQL (if any) is never touched: each instance is a fresh cluster
(``initdb``, trust auth, fsync off) listening on 127.0.0.1 at a free port, with its socket
in its own directory. As root the cluster runs as the ``postgres`` user (PostgreSQL refuses
root). Set ``POSTGRES_URL`` to use an existing server instead; nothing is started then::

    with postgres_server() as pg:
        store = StrategyStore(pg.url)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from alpha_panda.domain.errors import ConfigurationError, TransientError

__all__ = ["PostgresServer", "find_pg_bin", "postgres_server", "start_postgres_server"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH)."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        raise ConfigurationError(
            "PostgreSQL is not installed: apt-get install -y --no-install-recommends postgresql"
        )
    return Path(candidates[0]).parent


@dataclass
class PostgresServer:
    """A running private PostgreSQL (or an external one when ``external_url`` is set)."""

    port: int
    directory: Path | None = None
    bin_dir: Path | None = None
    run_as: str | None = None
    external_url: str | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3) of the ``postgres`` database as superuser ``postgres``."""
        return self.external_url or f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        """Create a fresh database (tests that need isolation); returns its URL."""
        import psycopg

        dsn = self.url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory. Idempotent."""
        if self._stopped or self.external_url is not None or self.directory is None:
            return
        self._stopped = True
        assert self.bin_dir is not None
        _run(self, [str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"),
                    "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def _run(server: PostgresServer, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if server.run_as is not None:
        cmd = ["runuser", "-u", server.run_as, "--", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise TransientError(f"{' '.join(cmd)} failed: {result.stderr.strip()[-500:]}")
    return result


def start_postgres_server(*, attempts: int = 3) -> PostgresServer:
    """initdb a new cluster in a temp dir and start it on a free port; return once it accepts.

    Raises ``ConfigurationError`` when PostgreSQL is not installed and ``TransientError`` when
    it does not come up.
    """
    external = os.environ.get("POSTGRES_URL")
    if external:
        return PostgresServer(port=0, external_url=external)
    bin_dir = find_pg_bin()
    run_as = "postgres" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="alpha-panda-pg-"))
    server = PostgresServer(port=0, directory=directory, bin_dir=bin_dir, run_as=run_as)
    if run_as is not None:
        user = pwd.getpwnam(run_as)
        os.chown(directory, user.pw_uid, user.pw_gid)
    try:
        _run(server, [str(bin_dir / "initdb"), "-D", str(directory / "data"), "-U", "postgres",
                      "-A", "trust", "--no-sync", "-E", "UTF8"])
        last = ""
        for _ in range(attempts):
            server.port = _free_port()
            options = (f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1 "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            result = _run(server, [str(bin_dir / "pg_ctl"), "-D", str(directory / "data"), "-l",
                                   str(directory / "log"), "-w", "-t", "20", "-o", options,
                                   "start"], check=False)
            if result.returncode == 0:
                return server
            log = directory / "log"
            last = (log.read_text() if log.exists() else "") or result.stderr
    except BaseException:
        server.stop()
        raise
    server.stop()
    raise TransientError(f"PostgreSQL did not start after {attempts} attempts: {last[-500:]}")


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL for the duration of the ``with`` block."""
    server = start_postgres_server()
    try:
        yield server
    finally:
        server.stop()
