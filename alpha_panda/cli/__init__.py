"""The ``alpha-panda`` command line: the stable interface users and tests rely on."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]


def main() -> None:
    """The console script. Its imports take most of a second: Ctrl-C among them exits 130
    without a word, as a shell expects, instead of printing a library's traceback."""
    try:
        from alpha_panda.cli.main import app
    except KeyboardInterrupt:
        sys.exit(130)
    try:
        # (typer builds the command line from every command's signature before running
        # one: a Ctrl-C there escaped with typing's traceback. A command's own Ctrl-C is
        # handled by the command, or click's "Aborted!")
        app()
    except KeyboardInterrupt:
        sys.exit(130)


def __getattr__(name: str) -> Any:  # ``app`` loads on first use, inside main's guard
    if name == "app":
        from alpha_panda.cli.main import app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
