"""One process per service on an embedded log: a lock file per service beside the log.

The embedded log's consumer groups live in one process: two processes running the same
service on one log file would each take every partition of its group, handle the same
records and commit over each other's offsets (two ``alpha-panda run`` on one data directory
ended a replay with 846 fills and ₹-1,280.20 realized where one run makes 864 and ₹-714.30),
and two feeds would append every tick twice. ``run`` and ``service NAME`` therefore hold an
exclusive ``flock`` on ``<log file>.locks/<service>.lock`` while they run; the kernel drops
it when the process ends, however it ends (``kill -9`` included), so there is nothing to
clean up. The commands that only read the log or append to it (``dlq``, ``kill``,
``cancel``, ``halt``, ``ticks export``) take no lock: they run beside the system.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from alpha_panda.domain.errors import ConfigurationError


def lock_dir(log_file: Path) -> Path:
    """Where the service locks of the embedded log ``log_file`` are kept."""
    return log_file.with_name(log_file.name + ".locks")


@contextlib.contextmanager
def service_locks(log_file: Path, names: Sequence[str]) -> Iterator[None]:
    """Hold the lock of each service in ``names`` on ``log_file`` for the ``with`` block.

    Raises ``ConfigurationError`` naming the process that holds one of them (nothing is
    held then), or when the locks cannot be written (a read-only data directory).
    """
    held: list[int] = []
    try:
        directory = lock_dir(log_file)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write in {directory.parent}: {exc.strerror or exc}; the data "
                "directory must be writable (--data-dir, ALPHA_PANDA_DATA_DIR)") from exc
        for name in names:
            held.append(_acquire(directory / f"{name}.lock", name, log_file))
        yield
    finally:
        for fd in held:
            os.close(fd)  # releases the lock


def _acquire(path: Path, name: str, log_file: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the lock {path}: {exc.strerror or exc}; the data directory must "
            "be writable (--data-dir, ALPHA_PANDA_DATA_DIR)") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise ConfigurationError(
            f"{who} is already running {name} on {log_file} (`alpha-panda run` or "
            f"`alpha-panda service {name}`): two of them on one log would process the same "
            "records twice. Stop it first, or give this one its own data directory "
            "(`run --data-dir`, or ALPHA_PANDA_DATA_DIR: `service` has no --data-dir)"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())  # for the message of the next one
    except OSError as exc:
        os.close(fd)
        raise ConfigurationError(
            f"cannot write the lock {path}: {exc.strerror or exc}; is the disk of the "
            "data directory full?") from exc
    return fd
