"""The ``alpha-panda`` command line: the stable interface users and tests rely on."""

from __future__ import annotations

from alpha_panda.cli.main import app

__all__ = ["app"]
