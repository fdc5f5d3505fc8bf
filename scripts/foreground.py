"""Run a command as the terminal's foreground job, so that Ctrl-C reaches it alone.

``make run`` starts Alpha Panda under make. Ctrl-C in a terminal signals the whole
foreground process group, make included, and GNU make always dies of SIGINT (printing
"Interrupt", status 130) even when the program under it stopped cleanly and exited 0. Run
through this, the program gets a process group of its own and the terminal: Ctrl-C reaches
it alone, it drains and exits, and make returns its exit status. Ctrl-Z stops the whole job
as usual (``fg`` resumes it). Without a terminal (CI, scripts) the command is simply exec'd.

Usage: python scripts/foreground.py COMMAND [ARG...]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    if not os.isatty(0) or os.tcgetpgrp(0) != os.getpgrp():
        os.execvp(argv[0], argv)  # not the terminal's foreground job: nothing to hand over
    ours = os.getpgrp()
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # (to set the terminal's foreground group)
    child = subprocess.Popen(argv, process_group=0)
    os.tcsetpgrp(0, child.pid)
    try:
        while True:
            _, status = os.waitpid(child.pid, os.WUNTRACED)
            if not os.WIFSTOPPED(status):
                return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else (
                    128 + os.WTERMSIG(status))
            # Ctrl-Z stopped it: stop the job it belongs to (make, and this), as the shell
            # expects; on ``fg``, give the terminal back and let it go on
            os.tcsetpgrp(0, ours)
            os.killpg(ours, signal.SIGTSTP)
            os.tcsetpgrp(0, child.pid)
            os.killpg(child.pid, signal.SIGCONT)
    finally:
        os.tcsetpgrp(0, ours)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
