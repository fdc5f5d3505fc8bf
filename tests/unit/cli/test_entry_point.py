"""The console script: Ctrl-C while the command line is still loading exits quietly."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A child interpreter in which loading the command line is interrupted, as Ctrl-C in the
# second or so of imports after `alpha-panda` is typed (the first import of ``main`` raises
# KeyboardInterrupt: the signal's handler raises it wherever the import is).
INTERRUPTED = textwrap.dedent("""
    import sys
    class Interrupt:
        def find_spec(self, name, path=None, target=None):
            if name == "alpha_panda.cli.main":
                raise KeyboardInterrupt
    sys.meta_path.insert(0, Interrupt())
    from alpha_panda.cli import main
    main()
""")


def test_ctrl_c_while_loading_exits_130_without_a_traceback() -> None:
    done = subprocess.run([sys.executable, "-c", INTERRUPTED], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stderr, done.stdout) == (130, "", "")


def test_the_package_still_offers_the_typer_app() -> None:
    from alpha_panda import cli
    from alpha_panda.cli.main import app

    assert cli.app is app
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = cli.nope  # type: ignore[attr-defined]


# Ctrl-C a little later: the imports are done and typer is building the command line from
# every command's signature (some tens of ms of ``get_type_hints``), before any command runs.
INTERRUPTED_BUILDING = textwrap.dedent("""
    import sys
    import typer.main
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    typer.main.get_group = interrupted
    sys.argv = ["alpha-panda", "topics", "list"]
    from alpha_panda.cli import main
    main()
""")


def test_ctrl_c_while_the_command_line_is_built_exits_130_without_a_traceback() -> None:
    # (it printed typing's traceback and died of SIGINT: a Ctrl-C some 0.6 s after typing
    # `alpha-panda run`)
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_BUILDING], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr, done.stdout) == (130, "", "")
