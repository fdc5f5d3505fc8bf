"""``alpha-panda backtest``: run a strategy over a tick file, deterministically.

Register with ``alpha_panda.cli.backtest.register(app)`` (adds the ``backtest`` command).
``--json`` prints exactly one JSON object on stdout; progress and errors go to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alpha_panda.domain.errors import AlphaPandaError, StrategyConfigError
from alpha_panda.strategy.config import StrategyConfig, load_strategy_file, unmodelled

if TYPE_CHECKING:
    from alpha_panda.backtest.grid import SkippedCombination

PROGRESS_MIN_TICKS = 200_000
EXIT_STATUS = ("Exit status: 0; 1 when a strategy raised and was taken out of service (the "
               "summary is still printed, without that strategy from its failure on); 2 on "
               "bad input.")


def _apply_flags(config: StrategyConfig, slippage_bps: int | None, latency_ms: int | None,
                 no_costs: bool) -> StrategyConfig:
    changes: dict[str, Any] = {}
    if slippage_bps is not None:
        changes["slippage_bps"] = slippage_bps
    if latency_ms is not None:
        changes["latency_ms"] = latency_ms
    if no_costs:
        changes["costs"] = False
    if not changes:
        return config
    execution = config.execution.model_copy(update=changes)
    return config.model_copy(update={"execution": execution})


def _live_options(config: StrategyConfig) -> dict[str, Any]:
    """The risk limits and starting cash the live pipeline would use (same settings)."""
    from alpha_panda.cli.settings import load_settings
    from alpha_panda.services.risk_config import risk_config_for

    settings = load_settings()
    return {"risk": risk_config_for(settings, "paper", [config]),
            "initial_cash": settings.paper.initial_cash}


def _warn_untraded(config: StrategyConfig, tokens: Any, data: Path) -> None:
    """Warn of the strategy's instruments with no tick in the file (a token typo, or another
    file's): it never trades them, which the summary alone shows only as fewer fills."""
    import numpy as np

    present = set(np.unique(tokens).tolist())
    for token in config.instruments:
        if token not in present:
            typer.secho(f"warning: {config.source or config.id}: instruments: {token} has no "
                        f"tick in {data}: this strategy never trades it", fg="yellow", err=True)


def _bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // total if total else width
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}")
    sys.stderr.flush()
    if done >= total:
        sys.stderr.write("\n")


def backtest_command(
    strategy: Annotated[Path, typer.Option(help="strategy YAML file")],
    data: Annotated[Path, typer.Option(help="tick file: CSV or Parquet")],
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
    report: Annotated[Path | None, typer.Option(help="write an offline HTML report here (default: none)")] = None,
    grid: Annotated[list[str] | None, typer.Option(help="parameter sweep: NAME=V1,V2, once per parameter (default: no sweep)")] = None,
    slippage_bps: Annotated[int | None, typer.Option(help="override execution.slippage_bps (default: the strategy file's)")] = None,
    latency_ms: Annotated[int | None, typer.Option(help="override execution.latency_ms (default: the strategy file's)")] = None,
    no_costs: Annotated[bool, typer.Option("--no-costs", help="no brokerage or taxes")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Backtest a strategy over a tick file through risk, the paper exchange and the portfolio."""
    from alpha_panda.backtest.engine import run_backtest
    from alpha_panda.backtest.grid import grid_configs, parse_grid, run_grid
    from alpha_panda.backtest.report import render_html
    from alpha_panda.execution.market import MarketCalendar
    from alpha_panda.marketdata.files import load_ticks, tick_source
    from alpha_panda.observability.logging import configure_logging

    # A failing strategy is logged: to stderr, as stdout is the --json object's alone.
    configure_logging(level="WARNING", stream=sys.stderr)
    if report is not None and not report.parent.is_dir():
        # before the backtest: it was found only when the report was written, in a
        # traceback, after a backtest (or a sweep) of minutes whose figures were then lost
        typer.secho(f"error: --report {report}: no directory {report.parent}", fg="red",
                    err=True)
        raise typer.Exit(2)
    if report is not None and report.is_dir():  # (as late, with the figures lost)
        typer.secho(f"error: --report {report}: is a directory; give a file name, such as "
                    "report.html", fg="red", err=True)
        raise typer.Exit(2)
    try:
        config = _apply_flags(load_strategy_file(strategy), slippage_bps, latency_ms, no_costs)
        if not config.enabled:
            # the file named is the one to backtest: as the engine leaves disabled strategies
            # out, a file switched off for `run` gave a summary of nothing (0 fills, an
            # initial_equity of 0.00) and exit 0, read as a strategy that never trades
            typer.secho(f"note: {config.source}: enabled: false (run leaves it out); "
                        "backtested all the same", err=True)
            config = config.model_copy(update={"enabled": True})
        t0 = time.perf_counter()
        ticks = load_ticks(data)
        load_s = time.perf_counter() - t0
        _warn_untraded(config, ticks.instrument_token, data)
        if (note := unmodelled(config)) is not None:
            typer.secho(f"warning: {config.source or config.id}: {note}", fg="yellow", err=True)
        if len(ticks) and (note := MarketCalendar.load().unknown_years_note(
                int(ticks.ts[0]), int(ticks.ts[-1]))) is not None:
            typer.secho(f"warning: {data}: {note}", fg="yellow", err=True)
        show = not quiet and len(ticks) >= PROGRESS_MIN_TICKS
        options = _live_options(config)
        for note in options["risk"].idle_stops("paper", [config.id]):
            typer.secho(f"warning: {config.source or config.id}: risk: {note}", fg="yellow",
                        err=True)
        if grid:
            repeated: list[str] = []
            spec = parse_grid(grid, repeated=repeated)
            for note in repeated:
                typer.secho(f"warning: --grid {note} given more than once; each combination "
                            "runs once", fg="yellow", err=True)
            plan = grid_configs(config, spec)  # validates every combination first
            for skipped in plan.skipped:
                typer.secho(f"skipped {skipped.label}: {skipped.reason}", fg="yellow", err=True)
            for label in plan.same_as_earlier:
                typer.secho(f"warning: --grid {label} is a combination already in the sweep "
                            "(the same values, written differently); it runs once",
                            fg="yellow", err=True)
            if not plan.configs:
                raise StrategyConfigError(
                    "--grid", None, f"none of its {len(plan.skipped)} combination(s) is valid "
                    "for the strategy (each skipped above, with its reason)")
            rows = run_grid(plan.configs, ticks, on_done=_bar if not quiet else None,
                            source=tick_source(data), **options)
            _print_grid(rows, list(spec), plan.skipped, json_out, load_s)
            failed = [r for r in rows if r["strategies_failed"]]
            for r in failed:  # (ranked last: its figures stop where its strategy raised)
                label = ",".join(f"{k}={r['params'][k]}" for k in spec)
                typer.secho(f"error: --grid {label}: the strategy failed and was taken out "
                            "of service (its error is above); ranked last", fg="red", err=True)
            if report is None:
                if failed:
                    raise typer.Exit(1)
                return
            # the report is one run's: the best combination's, run again
            config = next(c for c in plan.configs if c.params == rows[0]["params"])
        result = run_backtest(config, ticks, source=tick_source(data), load_s=load_s,
                              progress=_bar if show and not grid else False, **options)
    except AlphaPandaError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    if report is not None:
        best = (" (the best combination: "
                + ", ".join(f"{k}={config.params[k]}" for k in parse_grid(grid)) + ")"
                if grid else "")
        page = render_html(result, ticks, f"Backtest: {config.id} on {data.name}{best}")
        try:
            report.write_text(page)
        except OSError as exc:  # (a directory of that name, no permission)
            typer.secho(f"error: --report: cannot write {report}: {exc.strerror}", fg="red",
                        err=True)
            raise typer.Exit(2) from None
        typer.echo(f"report{best} written to {report}", err=True)
    if grid:  # (its figures are the table's first row)
        if any(r["strategies_failed"] for r in rows):
            raise typer.Exit(1)
        return
    if json_out:
        typer.echo(result.to_json())
    else:
        _print_summary(result.to_dict())
    failed = result.summary["strategies_failed"]
    if failed:  # the figures are out, but they lack these strategies: not a clean run
        typer.secho(f"error: strategies failed and were taken out of service: "
                    f"{', '.join(failed)}", fg="red", err=True)
        raise typer.Exit(1)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Backtest summary", show_header=False)
    for key, value in summary.items():
        if key == "strategies":  # a row each
            for sid, f in value.items():
                table.add_row(f"strategy {sid}", f"net_pnl {f['net_pnl']} (realized "
                              f"{f['realized_pnl']}, unrealized {f['unrealized_pnl']}, charges "
                              f"{f['charges']}), {f['fills']} fills, "
                              f"{f['open_positions']} open positions")
            continue
        table.add_row(key, "n/a" if value is None else str(value))
    Console(width=max(100, Console().width)).print(table)


def _print_grid(rows: list[dict[str, Any]], keys: list[str], skipped: list[SkippedCombination],
                json_out: bool, load_s: float) -> None:
    if json_out:
        typer.echo(json.dumps({"load_s": round(load_s, 6), "grid": rows, "skipped": [
            {"params": s.params, "reason": s.reason} for s in skipped]}, separators=(",", ":")))
        return
    from rich.console import Console
    from rich.table import Table

    title = "Parameter sweep, best net P&L first" + (
        f" ({len(skipped)} invalid combination(s) skipped)" if skipped else "")
    table = Table(title=title)
    for col in ["rank", *keys, "net_pnl", "fills", "round_trips", "win_rate", "max_drawdown",
                "sharpe"]:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['rank']} failed" if r["strategies_failed"] else str(r["rank"]), *(str(r["params"][k]) for k in keys), r["net_pnl"],
                      str(r["fills"]), str(r["round_trips"]),
                      "-" if r["win_rate"] is None else f"{r['win_rate']:.3f}", r["max_drawdown"],
                      "-" if r["sharpe"] is None else f"{r['sharpe']:.2f}")
    Console(width=max(120, Console().width)).print(table)


def figures_help() -> str:
    """What the summary's figures mean (``metrics.FIGURES``), for the help text."""
    from alpha_panda.backtest.metrics import FIGURES

    return (EXIT_STATUS + " Figures: "
            + " | ".join(f"{k}: {v}." for k, v in FIGURES.items()))


def register(app: typer.Typer) -> None:
    """Add ``backtest`` to the ``alpha-panda`` command line."""
    app.command(name="backtest", epilog=figures_help())(backtest_command)
