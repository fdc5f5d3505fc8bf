"""Run a one-off job against the configured log (the commands that inspect or write it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer

from alpha_panda.domain.errors import AlphaPandaError
from alpha_panda.stream.log import Log

T = TypeVar("T")


def run_log_job(url: str | None, data_dir: Path | None, job: Callable[[Log], Awaitable[T]],
                *, create: bool = False) -> T:
    """Open the log (``url``/``data_dir`` or the settings'), run ``job``, close it.

    Logs go to stderr so ``--json`` output on stdout stays parseable; an Alpha Panda error
    becomes a red message and exit code 2. An embedded log that does not exist is such an
    error unless ``create``: opening it would make an empty one, and a kill switch or a
    cancel written there (a mistyped ``--data-dir``) would reach no running system.
    """
    from alpha_panda.cli.settings import load_settings
    from alpha_panda.observability.logging import configure_logging
    from alpha_panda.services.logs import kafka_settings, open_log

    settings = load_settings()
    configure_logging(json=settings.log_format == "json", level=settings.log_level)
    if (url or settings.log) == "memory":
        # a memory log is the process's own: a kill switch written to this command's
        # reached no running system, and said "kill switch for paper: on" (exit 0)
        typer.secho("error: a memory log lives in the process that made it, so no running "
                    "system is reached through it: give the running system's log (--log "
                    "embedded with its --data-dir, sqlite:PATH or kafka://HOST:PORT; "
                    "ALPHA_PANDA_LOG)", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    path = missing_log(url, data_dir)
    if not create and path is not None:
        typer.secho(f"error: no log at {path}: is this the data directory of the system "
                    "(--data-dir, ALPHA_PANDA_DATA_DIR)?", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)

    async def main() -> T:
        log = open_log(url or settings.log, data_dir or settings.data_dir,
                       kafka=kafka_settings(settings))
        await log.start()
        try:
            return await job(log)
        finally:
            await log.close()

    try:
        return asyncio.run(main())
    except AlphaPandaError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def missing_log(url: str | None, data_dir: Path | None) -> Path | None:
    """The file of the embedded log ``url``/``data_dir`` (or the settings') when there is
    none; None when it exists or the log is not embedded."""
    from alpha_panda.cli.settings import load_settings
    from alpha_panda.services.logs import embedded_file

    settings = load_settings()
    path = embedded_file(url or settings.log, data_dir or settings.data_dir)
    return path if path is not None and not path.is_file() else None
