"""``scripts/foreground.py`` (what ``make run`` runs Alpha Panda under): Ctrl-C in a terminal
reaches the program alone, so the job exits with the program's status, not of SIGINT."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "foreground.py"
# a program that stops cleanly on SIGINT, as alpha-panda run does, once it is listening
PROGRAM = ("import signal, sys, time; "
           "signal.signal(signal.SIGINT, lambda *a: sys.exit(0)); "
           "print('ready', flush=True); time.sleep(30); sys.exit(3)")


def _run_and_interrupt(argv: list[str]) -> int:
    """``argv`` as a terminal's foreground job; Ctrl-C once it says ready; its exit code."""
    pid, fd = pty.fork()
    if pid == 0:  # the job: session leader on the pty, in its foreground group
        os.execv(sys.executable, [sys.executable, *argv])
    seen = b""
    deadline = time.monotonic() + 20
    while b"ready" not in seen:
        assert time.monotonic() < deadline, f"never ready: {seen!r}"
        if select.select([fd], [], [], 0.1)[0]:
            seen += os.read(fd, 1024)
    time.sleep(0.2)
    os.write(fd, b"\x03")  # Ctrl-C: the terminal signals its foreground process group
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status)


def test_ctrl_c_reaches_the_program_alone_and_its_exit_status_is_the_jobs() -> None:
    assert _run_and_interrupt([str(SCRIPT), sys.executable, "-c", PROGRAM]) == 0
    # without it, the job itself (as make would be) dies of the SIGINT
    wrapper = f"import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', {PROGRAM!r}]))"
    assert _run_and_interrupt(["-c", wrapper]) == -2
