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
``preflight`` only looks (``lock_holders``): it takes none, so it never stands in the way
of a run starting as it looks.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
        pid = int(holder) if holder.isdigit() else None
        who = LockHolder(name, pid, _command(pid)).describe()  # its command line: which one
        raise ConfigurationError(
            f"{who} is already running {name} on {log_file} (`alpha-panda run` or "
            f"`alpha-panda service {name}`): two of them on one log would process the same "
            "records twice. Stop it first, or give this one its own data directory "
            "(--data-dir, or ALPHA_PANDA_DATA_DIR)"
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


@dataclass(frozen=True, slots=True)
class LockHolder:
    """A service lock held on a log: the service's name and who holds it (``pid`` and
    ``command``, the process's command line, when they can be told)."""

    service: str
    pid: int | None
    command: str

    def describe(self) -> str:
        who = f"process {self.pid}" if self.pid is not None else "another process"
        return f"{who} ({self.command})" if self.command else who


def lock_holders(log_file: Path) -> list[LockHolder]:
    """The service locks held on ``log_file`` now, by any process, without taking them.

    Read from the kernel's table of locks (``/proc/locks``); where there is none (not
    Linux), each lock is tried shared for an instant, which a run starting in that instant
    may find taken (it is then refused, and can be started again)."""
    directory = lock_dir(log_file)
    if not directory.is_dir():
        return []
    held = _flocks()
    out = []
    for path in sorted(directory.glob("*.lock")):
        try:
            st = path.stat()
        except OSError:
            continue
        if held is not None:
            pid = held.get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino), -1)
            if pid == -1:
                continue
        else:
            if not _taken(path):
                continue
            pid = None
        if not pid:  # (a pid from another pid namespace reads 0): the one it wrote
            written = path.read_text(errors="replace").strip()
            pid = int(written) if written.isdigit() else None
        out.append(LockHolder(path.stem, pid, _command(pid)))
    return out


def _flocks() -> dict[tuple[int, int, int], int | None] | None:
    """(major, minor, inode) -> pid of every ``flock`` in the kernel's table, or None
    when it cannot be read."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    out: dict[tuple[int, int, int], int | None] = {}
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a process waiting for the lock, not holding it
            continue
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            out[(int(major, 16), int(minor, 16), int(inode))] = int(fields[4]) or None
        except ValueError:
            continue
    return out


def _taken(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _command(pid: int | None) -> str:
    """The command line of process ``pid`` (``alpha-panda run --feed sim``), "" if unknown."""
    if pid is None:
        return ""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    args = [a.decode(errors="replace") for a in argv if a]
    # python -m alpha_panda.cli ... and the console script both read as alpha-panda ...
    for i, a in enumerate(args):
        if a in ("alpha_panda.cli", "alpha_panda") or Path(a).name == "alpha-panda":
            return " ".join(["alpha-panda", *args[i + 1:]])
    return " ".join(args)
