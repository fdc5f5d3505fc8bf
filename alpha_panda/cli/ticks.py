"""``alpha-panda ticks generate|export``: tick files for backtests and replays.

``generate`` writes a sample: the simulator's market (each of its NSE instruments a random
walk on NSE's tick grid of the day) over 09:15-15:30 IST sessions on NSE's trading days.
``export`` writes the
ticks a run recorded on its log (``run --feed kite`` through a session: Kite's own ticks),
in time order, for a backtest of what the market really did. Both write CSV or Parquet by
the file's extension, in the format ``load_ticks`` reads.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import typer

from alpha_panda.cli.log_job import run_log_job
from alpha_panda.cli.topics import DataDirOpt, LogOpt
from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.errors import DecodeError, ValidationError
from alpha_panda.domain.events import CODEC, MarketTick
from alpha_panda.execution.market import MarketCalendar
from alpha_panda.marketdata.columns import FLAG_EXTRAS, INT_EXTRAS, PRICE_EXTRAS
from alpha_panda.marketdata.files import TickColumns, write_ticks
from alpha_panda.marketdata.instruments import SIM_INSTRUMENTS
from alpha_panda.marketdata.simulator import MarketSimulator, session_start_ns
from alpha_panda.stream.log import Log, read_topic
from alpha_panda.stream.topics import MARKET_TICKS

app = typer.Typer(help="Write tick files: a generated sample, or what a run recorded.",
                  no_args_is_help=True)

GENERATE_FROM = date(2026, 4, 6)  # a Monday under the current rate card and tick sizes


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="the file to write: .csv, .csv.gz or .parquet")],
    ticks: Annotated[int, typer.Option(min=1, help="how many ticks in all")] = 100_000,
    instruments: Annotated[int, typer.Option(
        min=1, max=len(SIM_INSTRUMENTS),
        help="how many of the simulator's NSE instruments (default: all, as `make run` trades "
             "them: every sample strategy's among them)")] = len(SIM_INSTRUMENTS),
    days: Annotated[int, typer.Option(min=1, help="trading sessions to spread them over")] = 1,
    seed: Annotated[int, typer.Option(help="the same seed writes the same file")] = 0,
    start: Annotated[str | None, typer.Option(
        help=f"the first session, YYYY-MM-DD (the next trading day if it is none; default: "
             f"{GENERATE_FROM})")] = None,
    volatility: Annotated[float, typer.Option(
        min=0.0, help="each instrument's daily volatility in percent")] = 1.5,
) -> None:
    """A sample tick file: the simulator's market (each price a random walk on NSE's tick
    grid of the day, every tick carrying the previous close) over 09:15-15:30 IST sessions
    on NSE's trading days."""
    try:
        first = date.fromisoformat(start) if start else GENERATE_FROM
    except ValueError:
        typer.echo(f"error: --start {start!r} is not a date (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None
    calendar = MarketCalendar.load()
    per_day = -(-ticks // days)  # ceil: the last session may have fewer
    # each session's ticks from its open on, evenly (the step rounded up, so the tick after
    # a session's last is at its close, where the simulator moves on to the next open)
    step = -(-calendar.session_seconds * 1_000_000_000 // per_day)
    insts = SIM_INSTRUMENTS[:instruments]
    sim = MarketSimulator(
        instruments=insts, seed=seed, sessions=calendar,
        start_ns=calendar.next_open_ns(session_start_ns(first)) - step, step_ns=step,
        volatility_bps=volatility * 100 / math.sqrt(max(1.0, per_day / len(insts))))
    found = sim.next_ticks(ticks)
    _write(out, columns(found))
    sessions = sorted({ist_date(t.ts) for t in found})
    if found and (note := calendar.unknown_years_note(found[0].ts, found[-1].ts)) is not None:
        typer.secho(f"warning: {note}", fg="yellow", err=True)
    typer.echo(f"wrote {ticks:,} ticks of {len({t.instrument_token for t in found})} "
               f"instruments over {len(sessions)} session(s), {sessions[0]} to "
               f"{sessions[-1]}, to {out}")


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="the file to write: .csv, .csv.gz or .parquet")],
    log: LogOpt = None,
    data_dir: DataDirOpt = None,
    source: Annotated[str | None, typer.Option(
        help="only this feed's ticks (the `source` of their envelopes; default: every feed)"
    )] = None,
) -> None:
    """The ticks on the log's market.ticks (kept a day), in time order, to a tick file."""
    if data_dir is not None and not data_dir.is_dir():  # (opening a log there would make one)
        typer.echo(f"error: no data directory {data_dir}", err=True)
        raise typer.Exit(2)

    sources: Counter[str] = Counter()  # every feed's ticks on the log

    async def job(lg: Log) -> tuple[list[MarketTick], int]:
        found: list[MarketTick] = []
        bad = 0
        for r in await read_topic(lg, MARKET_TICKS):
            try:
                env = CODEC.decode_as(r.value, MarketTick)
            except DecodeError:
                bad += 1  # a malformed tick: dead-lettered by the services, skipped here
                continue
            sources[env.source] += 1
            if source is None or env.source == source:
                found.append(env.data)
        return found, bad

    found, bad = run_log_job(log, data_dir, job)
    if not found:
        # (a replay's source is `replay:FILE`: `--source replay` found nothing, unexplained)
        there = ", ".join(f"{name!r} ({n:,} tick{'' if n == 1 else 's'})" for name, n in sorted(sources.items()))
        typer.echo(f"error: no ticks on {MARKET_TICKS}"
                   + (f" from source {source!r}" if source else "")
                   + (f"; the sources there: {there}" if there else ""), err=True)
        raise typer.Exit(1)
    found.sort(key=lambda t: t.ts)  # stable: a token's ticks keep their order
    _write(out, columns(found))
    skipped = f" ({bad} malformed records skipped)" if bad else ""
    typer.echo(f"wrote {len(found):,} ticks to {out}{skipped}")


def _write(out: Path, cols: TickColumns) -> None:
    """``write_ticks``, with a clear error (exit 2) for a file it cannot write."""
    try:
        write_ticks(out, cols)
    except ValidationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (OSError, pa.ArrowException) as exc:
        typer.echo(f"error: cannot write {out}: {exc}", err=True)
        raise typer.Exit(2) from None


def columns(found: list[MarketTick]) -> TickColumns:
    """``found`` as columns, with every optional field some tick has (missing: null)."""
    def ints(values: list[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    extras: dict[str, np.ndarray] = {}
    nulls: dict[str, np.ndarray] = {}
    for name in FLAG_EXTRAS:  # (``tradable``: written when some tick is not)
        if not all(getattr(t, name) for t in found):
            extras[name] = ints([1 if getattr(t, name) else 0 for t in found])
    for name in (*PRICE_EXTRAS, *INT_EXTRAS):
        values = [getattr(t, name) for t in found]
        if all(v is None or (name == "last_quantity" and v == 0) for v in values):
            continue
        mask = np.asarray([v is None for v in values])
        extras[name] = ints([0 if v is None else v for v in values])
        if mask.any():
            nulls[name] = mask
    return TickColumns(ts=ints([t.ts for t in found]),
                       instrument_token=ints([t.instrument_token for t in found]),
                       last_price=ints([t.last_price for t in found]),
                       volume=ints([t.volume for t in found]), extras=extras, nulls=nulls)
