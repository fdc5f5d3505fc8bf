"""Commands: run, service, backtest, topics, dlq, auth, charges, strategy, kill, preflight."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from alpha_panda.domain.errors import AlphaPandaError
from alpha_panda.settings import Settings
from alpha_panda.stream.log import Log

app = typer.Typer(
    name="alpha-panda",
    help="Alpha Panda: event-driven algorithmic trading for Indian markets on a unified log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _settings(**overrides: Any) -> Settings:
    base = Settings()
    top = {k: v for k, v in overrides.items() if v is not None and k in Settings.model_fields}
    settings = base.model_copy(update=top)
    api: dict[str, Any] = {}
    if overrides.get("port") is not None:
        api["port"] = overrides["port"]
    if overrides.get("host") is not None:
        api["host"] = overrides["host"]
    if overrides.get("no_api"):
        api["enabled"] = False
    if api:
        settings = settings.model_copy(update={"api": settings.api.model_copy(update=api)})
    return settings


def _configure_logging(settings: Settings) -> None:
    from alpha_panda.observability.logging import configure_logging

    configure_logging(json=settings.log_format == "json", level=settings.log_level)


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@app.command()
def run(
    feed: Annotated[str | None, typer.Option(help="sim | replay:PATH | kite")] = None,
    log: Annotated[str | None, typer.Option(help="embedded | memory | sqlite:PATH | kafka://HOST:PORT")] = None,
    strategies: Annotated[Path | None, typer.Option(help="directory of strategy YAML files")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    port: Annotated[int | None, typer.Option(help="API port (default 8000)")] = None,
    host: Annotated[str | None, typer.Option(help="API host (default 127.0.0.1)")] = None,
    no_api: Annotated[bool, typer.Option("--no-api", help="do not start the HTTP API")] = False,
    speed: Annotated[float | None, typer.Option(help="replay pacing: 1 = real time")] = None,
    exit_at_end: Annotated[bool, typer.Option("--exit-at-end", help="replay: exit once every tick has flowed through")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print a JSON summary on stdout at exit")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="where the embedded log and state live")] = None,
) -> None:
    """Run every service in one process: feed → strategies → risk → trading engines → portfolio → API."""
    from alpha_panda.services.app import RunOptions, SystemRun
    from alpha_panda.services.summary import run_summary

    settings = _settings(feed=feed, log=log, strategies_dir=strategies, port=port, host=host,
                         no_api=no_api, data_dir=data_dir)
    if sys.stderr.isatty() and "ALPHA_PANDA_LOG_LEVEL" not in os.environ:
        # The live progress panel is the terminal's view; service logs would scroll it away.
        settings = settings.model_copy(update={"log_level": "WARNING"})
    _configure_logging(settings)
    if exit_at_end and not settings.feed.startswith("replay:"):
        raise fail("--exit-at-end needs --feed replay:FILE")
    options = RunOptions(duration=duration, exit_at_end=exit_at_end, speed=speed,
                         progress=not json_out or sys.stderr.isatty())
    system = SystemRun(settings, options)
    try:
        asyncio.run(system.run())
    except AlphaPandaError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted before the pipeline drained", code=130) from None
    if json_out:
        typer.echo(json.dumps(run_summary(system)))


@app.command()
def service(
    name: Annotated[str, typer.Argument(help="feed | strategy-runner | risk-manager | paper-engine | portfolio | zerodha-engine | api")],
    log: Annotated[str | None, typer.Option(help="kafka://HOST:PORT (or embedded for trying it)")] = None,
    feed: Annotated[str | None, typer.Option(help="for the feed service: sim | replay:PATH | kite")] = None,
    strategies: Annotated[Path | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option(help="for the api service")] = None,
    speed: Annotated[float | None, typer.Option(help="replay pacing")] = None,
    duration: Annotated[float | None, typer.Option()] = None,
) -> None:
    """Run one service as its own process (scale out on Kafka with consumer groups)."""
    from alpha_panda.services.app import RunOptions, SystemRun

    settings = _settings(log=log, feed=feed, strategies_dir=strategies, port=port,
                         no_api=name != "api")
    _configure_logging(settings)
    options = RunOptions(duration=duration, speed=speed, progress=False)
    system = SystemRun(settings, options, only=name)
    try:
        asyncio.run(system.run())
    except AlphaPandaError as exc:
        raise fail(str(exc)) from None


@app.command()
def kill(
    broker: Annotated[str, typer.Option(help="paper or zerodha")] = "paper",
    flatten: Annotated[bool, typer.Option(help="also close every open position at market")] = False,
    off: Annotated[bool, typer.Option("--off", help="release the kill switch")] = False,
    log: Annotated[str | None, typer.Option(help="the running system's log (default: settings)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="the running system's data directory")] = None,
) -> None:
    """Kill switch: block every new order of a broker (and optionally flatten positions).

    Writes a kill-switch event to the broker's control topic, so it reaches the running risk
    manager (one process or many), is kept on the log and survives restarts.
    """
    from alpha_panda.cli.log_job import run_log_job
    from alpha_panda.services.control import PipelineControl

    async def send(log_: Log) -> None:
        await PipelineControl(log_, requested_by="cli").set_kill_switch(
            broker, active=not off, flatten=flatten)

    run_log_job(log, data_dir, send)
    state = "released" if off else ("on, flattening positions" if flatten else "on")
    typer.echo(f"kill switch for {broker}: {state}")


@app.command()
def preflight(
    log: Annotated[str | None, typer.Option()] = None,
    strategies: Annotated[Path | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Run every readiness check; exit non-zero if any fails."""
    from alpha_panda.services.preflight import print_report, run_checks

    settings = _settings(log=log, strategies_dir=strategies, port=port)
    _configure_logging(settings)
    results = asyncio.run(run_checks(settings))
    print_report(results)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _register_subcommands() -> None:
    """Sub-command groups owned by their packages."""
    from alpha_panda.cli import auth, backtest, charges, dlq, strategy, topics

    app.add_typer(topics.app, name="topics", help="Create and list the topic taxonomy.")
    app.add_typer(dlq.app, name="dlq", help="Inspect and replay dead letters.")
    app.add_typer(auth.app, name="auth", help="Kite Connect login and session status.")
    app.add_typer(strategy.app, name="strategy", help="Write and check strategies.")
    backtest.register(app)
    app.command(name="charges", help="Zerodha's charges on a trade (brokerage calculator).")(
        charges.charges_command)


_register_subcommands()
