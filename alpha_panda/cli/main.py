"""Commands: run, service, backtest, topics, dlq, auth, charges, strategy, kill, cancel,
preflight."""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from alpha_panda.cli.settings import load_settings
from alpha_panda.domain.errors import AlphaPandaError, ValidationError
from alpha_panda.settings import EMPTY_HOST, Settings
from alpha_panda.stream.log import Log

app = typer.Typer(
    name="alpha-panda",
    help="Alpha Panda: event-driven algorithmic trading for Indian markets on a unified log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _settings(**overrides: Any) -> Settings:
    base = load_settings()
    top = {k: v for k, v in overrides.items() if v is not None and k in Settings.model_fields}
    settings = base.model_copy(update=top)
    api: dict[str, Any] = {}
    if overrides.get("port") is not None:
        api["port"] = overrides["port"]
    if overrides.get("host") is not None:
        if not overrides["host"].strip():
            raise fail(f"--host is {EMPTY_HOST}")
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


# Options whose default comes from Settings (an ALPHA_PANDA_* variable, else the value named).
FEED_HELP = "sim | replay:PATH | kite (default: sim)"
LOG_HELP = "embedded | memory | sqlite:PATH | kafka://HOST:PORT (default: embedded)"
# (a memory log is the process's own: a command reaches a running system on the others)
RUNNING_LOG_HELP = ("the running system's log: embedded | sqlite:PATH | kafka://HOST:PORT "
                    "(default: embedded)")
STRATEGIES_HELP = "directory of strategy YAML files (default: the bundled samples)"
PORT_HELP = "API port (default: 8000)"
DATA_DIR_HELP = "where the embedded log and state live (default: ./data)"
SPEED_HELP = ("replay pacing: 1 = real time, 10 = ten times faster (default: as fast as "
              "possible); a replay feed only")
ENV_NOTE = "Options left out come from ALPHA_PANDA_* environment variables, else the defaults shown."


def _check_speed(speed: float | None) -> None:
    """Refuse a ``--speed`` the replay cannot pace by (a negative one waited forever, an
    infinite or NaN one crashed the feed), before anything starts."""
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise fail(f"--speed must be a number above 0 (1 = real time), not {speed}; "
                   "leave it out to replay as fast as possible")


def _check_speed_feed(speed: float | None, feed: str) -> None:
    """Refuse ``--speed`` with a feed it does not pace: only a replay reads it (the
    simulator ran at its own rate, the option silently ignored)."""
    if speed is not None and not feed.startswith("replay:"):
        raise fail(f"--speed paces a replay (--feed replay:FILE), not the {feed} feed; leave "
                   "it out (the simulator's pace is ALPHA_PANDA_SIMULATOR__RATE ticks a second)")


@app.command(epilog=ENV_NOTE)
def run(
    feed: Annotated[str | None, typer.Option(help=FEED_HELP)] = None,
    log: Annotated[str | None, typer.Option(help=LOG_HELP)] = None,
    strategies: Annotated[Path | None, typer.Option(help=STRATEGIES_HELP)] = None,
    duration: Annotated[float | None, typer.Option(
        min=0, help="stop after this many seconds (default: run until Ctrl-C)")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help=PORT_HELP)] = None,
    host: Annotated[str | None, typer.Option(help="API host (default: 127.0.0.1)")] = None,
    no_api: Annotated[bool, typer.Option("--no-api", help="do not start the HTTP API")] = False,
    speed: Annotated[float | None, typer.Option(help=SPEED_HELP)] = None,
    exit_at_end: Annotated[bool, typer.Option("--exit-at-end", help="replay: exit once every tick has flowed through")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print a JSON summary on stdout at exit")] = False,
    data_dir: Annotated[Path | None, typer.Option(help=DATA_DIR_HELP)] = None,
) -> None:
    """Run every service in one process: feed → strategies → risk → trading engines → portfolio → API."""
    from alpha_panda.services.app import RunOptions, SystemRun
    from alpha_panda.services.summary import run_summary, strategies_failed

    _check_speed(speed)
    settings = _settings(feed=feed, log=log, strategies_dir=strategies, port=port, host=host,
                         no_api=no_api, data_dir=data_dir)
    _check_speed_feed(speed, settings.feed)
    if sys.stderr.isatty() and "ALPHA_PANDA_LOG_LEVEL" not in os.environ:
        # The live progress panel is the terminal's view; service logs would scroll it away.
        settings = settings.model_copy(update={"log_level": "WARNING"})
    _configure_logging(settings)
    if exit_at_end and not settings.feed.startswith("replay:"):
        raise fail("--exit-at-end needs --feed replay:FILE")
    options = RunOptions(duration=duration, exit_at_end=exit_at_end, speed=speed,
                         progress=not json_out or sys.stderr.isatty(), summary=json_out)
    system = SystemRun(settings, options)
    try:
        asyncio.run(system.run())
    except AlphaPandaError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted before the pipeline drained", code=130) from None
    if json_out:
        typer.echo(json.dumps(run_summary(system)))
    _note_resumed(system, settings)
    if exit_at_end and speed is None:
        # (a new trader's strategy that waits on its fills made 4 fills here, 226 in a backtest)
        typer.secho("note: replayed as fast as possible, so fills reached the strategies many "
                    "ticks later than in a backtest; to compare with `alpha-panda backtest`, "
                    "pace the replay (--speed 500)", err=True)
    if system.dead_letters:  # set aside, not failed: the exit status stays as it is
        n = sum(system.dead_letters.values())
        where = ", ".join(f"{t}: {k}" for t, k in system.dead_letters.items())
        typer.secho(f"warning: {n} dead letter{'s' if n != 1 else ''} written during this run "
                    f"({where}): records set aside unprocessed; see `alpha-panda dlq list`",
                    fg=typer.colors.YELLOW, err=True)
    if system.failures:  # the figures are printed, but of a run that did not go through
        raise fail("services failed, so the run is incomplete: " + "; ".join(system.failures),
                   code=1)
    failed = strategies_failed(system)
    if failed:  # as backtest: the figures are printed, but without these strategies
        raise fail(f"strategies failed and were taken out of service: {', '.join(failed)}", code=1)
    invalid = system.pipeline.config_errors if system.pipeline else []
    if invalid:  # they were reported at the start; a script must not take this run as clean
        # (a file can have two errors: its own and an id another file claims too)
        files = len({e.source for e in invalid})
        raise fail(f"{files} strategy file(s) invalid, so not run: "
                   + "; ".join(str(e) for e in invalid), code=1)


def _note_resumed(system: Any, settings: Settings) -> None:
    """Say so when a replay found the file's ticks on the log already: a second replay of
    a file on one data directory publishes nothing, and its figures are the first run's
    (a trader who changed a strategy's parameters between the two got the same figures
    back, without a word)."""
    feed = system.feed
    upto = getattr(feed, "upto", None)
    if upto is None or feed is None:
        return
    earlier = upto - feed.publisher.published
    if earlier > 0:
        where = settings.data_dir if settings.log == "embedded" else settings.log
        typer.secho(
            f"note: {earlier:,} of the file's ticks were on the log of {where} "
            "from an earlier run, and were not replayed again: the figures are of every run "
            "on it, with the strategies as they were then; for a replay of its own, give a "
            "new --data-dir", fg=typer.colors.YELLOW, err=True)


@app.command(epilog=ENV_NOTE)
def service(
    names: Annotated[list[str], typer.Argument(
        metavar="NAME...",
        help="feed | strategy-runner | risk-manager | paper-engine | portfolio | "
             "zerodha-engine | api; several run together in this process")],
    log: Annotated[str | None, typer.Option(
        help="embedded (the SQLite log of --data-dir, shared by every process on it) or "
             "kafka://HOST:PORT (default: embedded)")] = None,
    feed: Annotated[str | None, typer.Option(help=f"for the feed service: {FEED_HELP}")] = None,
    strategies: Annotated[Path | None, typer.Option(
        help=f"for the strategy runner: {STRATEGIES_HELP}")] = None,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help=f"for the api service: {PORT_HELP}")] = None,
    speed: Annotated[float | None, typer.Option(help=f"for the feed service: {SPEED_HELP}")] = None,
    duration: Annotated[float | None, typer.Option(
        min=0, help="stop after this many seconds (default: run until stopped)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help=DATA_DIR_HELP)] = None,
) -> None:
    """Run one service, or several, as a process of their own: on Kafka to scale out with
    consumer groups; on the embedded log to use more than one core (e.g. `service feed
    strategy-runner risk-manager` beside `service paper-engine portfolio api`: the processes
    of a data directory share its log and the read model the API serves)."""
    from alpha_panda.services.app import RunOptions, SystemRun

    _check_speed(speed)
    settings = _settings(log=log, feed=feed, strategies_dir=strategies, port=port,
                         no_api="api" not in names, data_dir=data_dir)
    _check_speed_feed(speed, settings.feed)
    _configure_logging(settings)
    options = RunOptions(duration=duration, speed=speed, progress=False)
    try:
        system = SystemRun(settings, options, only=names)
        asyncio.run(system.run())
    except AlphaPandaError as exc:
        raise fail(str(exc)) from None
    if system.failures:
        raise fail("failed: " + "; ".join(system.failures), code=1)


@app.command(epilog=ENV_NOTE)
def kill(
    broker: Annotated[list[str] | None, typer.Option(
        help="paper or zerodha, repeated (default: every broker when setting the switch, as "
             "a kill that missed the live account would be worse than one that stops paper "
             "too; --off needs it, so releasing one never releases the other)")] = None,
    flatten: Annotated[bool, typer.Option(
        help="also close every open position at market (not with --off)")] = False,
    off: Annotated[bool, typer.Option("--off", help="release the kill switch")] = False,
    log: Annotated[str | None, typer.Option(help=RUNNING_LOG_HELP)] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="the running system's data directory (default: ./data)")] = None,
) -> None:
    """Kill switch: block every new order of every broker, or of one (and optionally
    flatten positions).

    Writes a kill-switch event to each broker's control topic, so it reaches the running risk
    manager (one process or many), is kept on the log and survives restarts.
    """
    from alpha_panda.cli.log_job import run_log_job
    from alpha_panda.domain.values import BROKERS
    from alpha_panda.services.control import PipelineControl

    if flatten and off:  # as the API's 422: it would release the switch, closing nothing
        raise fail("--flatten applies only when setting the kill switch, not with --off: "
                   "releasing it keeps the positions")
    if off and not broker:  # (a release of paper must not release a live switch too)
        raise fail("--off releases the switch of the broker named: --broker paper or "
                   "--broker zerodha (both: --broker paper --broker zerodha)")
    brokers = list(dict.fromkeys(broker)) if broker else list(BROKERS)
    unknown = [b for b in brokers if b not in BROKERS]
    if unknown:
        raise fail(f"unknown broker {unknown[0]!r}: {' or '.join(BROKERS)}")

    async def send(log_: Log) -> None:
        control = PipelineControl(log_, requested_by="cli")
        for b in brokers:
            await control.set_kill_switch(b, active=not off, flatten=flatten)

    run_log_job(log, data_dir, send)
    state = "released" if off else ("on, flattening positions" if flatten else "on")
    for b in brokers:
        typer.echo(f"kill switch for {b}: {state}")


@app.command(epilog=ENV_NOTE)
def halt(
    strategy_id: Annotated[str, typer.Argument(help="the strategy's id (its file's id:)")],
    flatten: Annotated[bool, typer.Option(
        help="also close its positions at market (not with --off)")] = False,
    off: Annotated[bool, typer.Option("--off", help="put it back in service")] = False,
    broker: Annotated[list[str] | None, typer.Option(
        help="a broker it trades on, repeated (default: its config's brokers, from "
             "--strategies or the config store; every broker without them, or when no "
             "config has its id)")] = None,
    strategies: Annotated[Path | None, typer.Option(
        help=f"the running system's strategies, to read its brokers from: {STRATEGIES_HELP}")]
        = None,
    log: Annotated[str | None, typer.Option(help=RUNNING_LOG_HELP)] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="the running system's data directory (default: ./data)")] = None,
) -> None:
    """Take one strategy out of service (the others trade on), or put it back.

    Writes a halt to the control topic of each broker it trades on (its config's brokers,
    read as the running system reads them): its open orders are cancelled, what it signals
    goes nowhere (it still sees the ticks), and with --flatten its positions are closed at
    market. Kept on the log: it stays halted across restarts until --off. When no valid
    config has the id, or no strategies directory (nor config store) says where the running
    system's is, the halt goes to every broker: better than missing the one it trades on.
    """
    from alpha_panda.cli.log_job import run_log_job
    from alpha_panda.domain.values import BROKERS
    from alpha_panda.services.control import PipelineControl

    if flatten and off:  # as the API's 422: it would put the strategy back, closing nothing
        raise fail("--flatten applies only when halting, not with --off: a strategy put back "
                   "in service keeps its positions")
    note = ""
    if broker:
        # every name checked before any is written: one halt sent, then "unknown broker"
        # on the next, read as nothing done while the strategy stood halted
        brokers = list(dict.fromkeys(broker))
        unknown = [b for b in brokers if b not in BROKERS]
        if unknown:
            raise fail(f"unknown broker {unknown[0]!r}: {' or '.join(BROKERS)}")
    else:
        from alpha_panda.services.strategy_configs import strategy_route

        route = strategy_route(_settings(strategies_dir=strategies), strategy_id)
        if route.brokers is not None:
            brokers, note = route.brokers, f" (its brokers, from {route.source})"
        else:
            brokers = [b.value for b in BROKERS]
            note = (f" (every broker, as which ones it trades on is unknown: {route.source}; "
                    "--broker names them)")

    async def send(log_: Log) -> None:
        control = PipelineControl(log_, requested_by="cli")
        for b in brokers:
            await control.halt_strategy(b, strategy_id, active=not off, flatten=flatten)

    run_log_job(log, data_dir, send)
    state = "back in service" if off else ("halted, flattening its positions" if flatten
                                           else "halted")
    typer.echo(f"strategy {strategy_id} on {', '.join(brokers)}: {state}{note}")


@app.command(epilog=ENV_NOTE)
def cancel(
    order_id: Annotated[str, typer.Argument(help="the order's id (GET /api/v1/orders/BROKER)")],
    broker: Annotated[str, typer.Option(help="paper or zerodha")] = "paper",
    log: Annotated[str | None, typer.Option(help=RUNNING_LOG_HELP)] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="the running system's data directory (default: ./data)")] = None,
) -> None:
    """Cancel what is left of one open order.

    Looks the order up on the log (an unknown or closed order is an error, exit 2), then
    writes a cancel request to the broker's control topic: the running trading engine
    cancels the order (reason "user"), or finds it filled first.
    """
    from alpha_panda.api.control import check_order_id
    from alpha_panda.cli.log_job import run_log_job
    from alpha_panda.services.control import PipelineControl

    try:  # before the log is read: every order topic would be scanned for it
        check_order_id(order_id)
    except ValidationError as exc:
        raise fail(str(exc)) from None

    async def send(log_: Log) -> str:
        control = PipelineControl(log_, requested_by="cli")
        state = await control.order_state(broker, order_id)
        if state is None:
            # (an id copied from the other broker's tab, --broker left at its default)
            other = next((b for b in ("paper", "zerodha") if b != broker), None)
            if other is not None and await control.order_state(other, order_id) is not None:
                raise ValidationError(f"no order {order_id!r} on {broker}: it is a {other} "
                                      f"order (--broker {other})")
            raise ValidationError(f"no order {order_id!r} on {broker}")
        if not state.is_open:
            raise ValidationError(f"order {order_id} is {state.status}: "
                                  "nothing is left of it to cancel")
        await control.cancel_order(broker, order_id)
        return state.status

    status = run_log_job(log, data_dir, send)
    typer.echo(f"cancel requested for {broker} order {order_id} ({status}); "
               "its status shows the outcome")


@app.command(epilog=ENV_NOTE)
def preflight(
    feed: Annotated[str | None, typer.Option(help=f"the feed run will use: {FEED_HELP}")] = None,
    log: Annotated[str | None, typer.Option(help=f"the log to reach: {LOG_HELP}")] = None,
    strategies: Annotated[Path | None, typer.Option(
        help=f"the strategies that must load: {STRATEGIES_HELP}")] = None,
    port: Annotated[int | None, typer.Option(
        help="the API port that must be free (default: 8000)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help=DATA_DIR_HELP)] = None,
) -> None:
    """Run every readiness check; exit non-zero if any fails."""
    from alpha_panda.services.preflight import print_report, run_checks

    settings = _settings(feed=feed, log=log, strategies_dir=strategies, port=port,
                         data_dir=data_dir)
    _configure_logging(settings)
    results = asyncio.run(run_checks(settings))
    print_report(results)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _register_subcommands() -> None:
    """Sub-command groups owned by their packages."""
    from alpha_panda.cli import auth, backtest, charges, dlq, strategy, ticks, topics

    app.add_typer(topics.app, name="topics", help="Create and list the topic taxonomy.")
    app.add_typer(dlq.app, name="dlq", help="Inspect and replay dead letters.")
    app.add_typer(auth.app, name="auth", help="Kite Connect login and session status.")
    app.add_typer(strategy.app, name="strategy", help="Write and check strategies.")
    app.add_typer(ticks.app, name="ticks", help="Write tick files: a sample, or what a run recorded.")
    backtest.register(app)
    app.command(name="charges", help="Zerodha's charges on a trade (brokerage calculator).")(
        charges.charges_command)


def _reflow_help(group: typer.Typer) -> None:
    """Take each command's help from its docstring with the lines of each paragraph joined:
    typer keeps a docstring's line breaks, and on a terminal narrower than them each line
    broke again, leaving one- and two-word lines between full ones (``halt --help``)."""
    for info in group.registered_commands:
        doc = info.callback.__doc__ if info.callback is not None else None
        if info.help is None and doc:
            paragraphs = inspect.cleandoc(doc).split("\n\n")
            info.help = "\n\n".join(p if p.startswith("\b") else " ".join(p.split("\n"))
                                     for p in paragraphs)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_help(sub.typer_instance)


_register_subcommands()
_reflow_help(app)
