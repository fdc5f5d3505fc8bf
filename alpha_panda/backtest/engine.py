"""The deterministic in-process backtest: the live pipeline's code, with no log.

``run_backtest`` composes exactly the parts the live services use:
``StrategyRunner`` → ``RiskEngine`` → ``PaperVenue`` (one ``PaperExchange`` per execution
setting) → ``PositionLedger``. For every tick, in file order, the order of operations is
the live pipeline's:

1. the exchange sees the tick first: fills of resting orders (and expiries) go to the
   ledger, the risk engine and the runner's feedback;
2. the risk engine sees the tick, and with ``daily_loss_flatten`` stops a strategy (or
   the account) whose day's loss reached its limit, as the risk manager does: halted,
   open orders cancelled, positions closed by market orders just after the tick, until
   the next day's first tick (``daily_loss``);
3. the runner runs the strategies; each signal gets the id
   ``derive_id(tick_id(source, seq), f"strategy:{strategy_id}", n)`` (``signal_ids``) and
   goes, one at a time, through ``risk.check`` → ``exchange.submit`` → its order events
   → ledger, risk and runner feedback (a risk rejection goes back to the runner).

Speed without special cases: every strategy goes through the same path, but the engine
skips calls that cannot change any outcome, and makes them the moment they could:

- the exchange gets a tick only while its instrument has an open order (or the run holds
  MIS positions); otherwise, just before an order for an instrument is submitted, it is
  given that instrument's latest tick if it has not seen it. With no open order, a tick
  changes nothing in the exchange but its price history, of which orders read only the
  latest tick: the results are identical (a test runs the naive order side by side);
- the risk engine sees every tick only when a configured limit reads marks (daily loss,
  gross exposure); otherwise it gets the latest tick of a signal's instrument just before
  that signal is checked (its other rules read only that instrument's last price);
- the ledger is marked at each equity sample and at the end (realized P&L never depends
  on marks; unrealized uses the last price of each instrument), and fills are booked into
  it, in their order, just before: nothing reads it in between;
- strategies get one reused, mutable tick view unless one declares ``keeps_ticks`` (one
  a strategy keeps anyway is left to it, and the next row gets a new one), and
  run from the engine's own loop: ``StrategyRunner.process`` inlined (same routing table,
  clock, warm-up, isolation and signal checks, through the runner's ``dispatch``,
  ``fail_slot``, ``warming_up`` and ``accept``), one call less per tick.

Equity is sampled on a fixed event-time grid (at most ~1,000 points), at each IST day's
last tick and at the end; max drawdown, Sharpe and exposure come from those samples.
Money is int paise throughout.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np

from alpha_panda.backtest.metrics import (
    NS_PER_DAY,
    NS_PER_S,
    round_trips,
)
from alpha_panda.backtest.result import BacktestResult, summarize
from alpha_panda.backtest.view import TickView
from alpha_panda.backtest.wiring import Engine
from alpha_panda.domain.clock import IST_OFFSET_NS
from alpha_panda.domain.events import (
    MarketTick,
)
from alpha_panda.marketdata.columns import FLAG_EXTRAS
from alpha_panda.marketdata.files import TickColumns
from alpha_panda.risk import RiskConfig
from alpha_panda.strategy.config import StrategyConfig
from alpha_panda.strategy.runner import DEFAULT_STRATEGY_CASH

MAX_SAMPLES: Final = 1000
Progress = Callable[[int, int], None]


def sample_rows(ts: np.ndarray) -> tuple[list[int], float]:
    """Row indices ending each sampling interval (a fixed event-time grid, and each IST
    day's last tick) and the grid's length.

    Sharpe is of each day's close: over a file of more than about two years the grid's step
    is longer than a night, and the grid alone skipped days and took closes mid-session
    (800 days of ticks: 224 closes missed, a Sharpe of -1.05 where the closes give -1.01)."""
    n = len(ts)
    if n == 0:
        return [], 0.0
    span = int(ts[-1] - ts[0])
    step = max(1, -(-span // MAX_SAMPLES))
    edges = np.arange(int(ts[0]) + step, int(ts[-1]) + step, step, dtype=np.int64)
    rows = np.searchsorted(ts, edges, side="left").tolist()
    days = (ts + IST_OFFSET_NS) // NS_PER_DAY
    closes = (np.flatnonzero(np.diff(days)) + 1).tolist()  # the row after a day's last tick
    ends = sorted({r for r in rows if 0 < r < n} | set(closes) | {n})
    return ends, step / NS_PER_S


def run_backtest(
    config: StrategyConfig | Sequence[StrategyConfig],
    ticks: TickColumns,
    *,
    progress: bool | Progress = False,
    source: str = "replay:backtest",
    initial_cash: int = DEFAULT_STRATEGY_CASH,
    seed: int = 0,
    load_s: float = 0.0,
    risk: RiskConfig | None = None,
) -> BacktestResult:
    """Run strategies over tick columns; deterministic (same input, same result).

    ``source`` names the tick stream for signal ids (``tick_source(path)`` for a file, as
    the replay feed does). ``initial_cash`` is each strategy's starting cash in paise.
    ``progress``: True draws a bar on stderr, or pass ``callback(done, total)``.
    ``risk``: the risk limits (default: only the strategies' own ``risk:`` sections; the
    CLI passes the same configuration the live risk manager builds from settings).
    """
    configs = [config] if isinstance(config, StrategyConfig) else list(config)
    configs = [c for c in configs if c.enabled]
    report: Progress | None = _stderr_bar if progress is True else progress or None
    started = time.perf_counter()  # processing time includes setup and column conversion
    eng = Engine(configs, ticks, source, initial_cash, seed, risk)
    n = len(eng.ts_l)
    ends, _ = sample_rows(ticks.ts)
    # The run allocates many short-lived objects and makes no reference cycles of its own;
    # the cyclic collector would only rescan the large column lists again and again. It is
    # paused for the replay and the summary, and resumes once the engine (its column lists,
    # orders, decisions) is gone: else its first pass would scan all of them once more, just
    # before they are freed. Cycles a strategy makes are collected after the run.
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        samples = _replay(eng, ticks, ends, report)
        elapsed = time.perf_counter() - started
        if report is _stderr_bar and n:
            sys.stderr.write("\n")
        result = summarize(
            ticks=n, elapsed_s=elapsed, load_s=load_s, ledger=eng.ledger, fills=eng.fills,
            trips=round_trips(eng.fills), samples=samples, start_ns=eng.ts_l[0] if n else 0,
            counts=eng.counts,
            rejections=eng.rejections, rejection_messages=eng.rejection_messages,
            statuses=eng.runner.statuses(),
            initial_equity=initial_cash * len(configs), stops=eng.stops,
        )
        del eng
    finally:
        if gc_enabled:
            gc.enable()
    return result


def _replay(eng: Engine, ticks: TickColumns, ends: list[int],
            report: Progress | None) -> list[tuple[int, int, int]]:
    """The tick loop (steps 1-3 of the module docstring); returns the equity samples."""
    ts_l, tok_l, px_l, vol_l = eng.ts_l, eng.tok_l, eng.px_l, eng.vol_l
    n = len(ts_l)
    fresh = eng.runner.keeps_ticks
    extras = [(name, (values.astype(bool) if name in FLAG_EXTRAS else values).tolist(),
               ticks.nulls[name].tolist() if name in ticks.nulls else None)
              for name, values in ticks.extras.items()]
    view = TickView()
    # A strategy that stores the view (``self.prev = tick``) without ``keeps_ticks`` would
    # see it change under it (its previous tick always the current one): a view someone
    # else now refers to is left to them, and the next row gets a new one.
    refs = sys.getrefcount(view)
    runner = eng.runner
    process = runner.process
    route = runner.dispatch()
    clock = runner.clock
    references = runner.references()
    open_orders = eng.open_orders
    samples: list[tuple[int, int, int]] = []
    # Flags only an event can change: re-read after each call that routes events.
    every_ex = eng.exchange_every_tick
    every_risk = eng.risk_every_tick
    stops = eng.risk.has_stops
    start = 0
    for end in ends:
        rows = zip(range(start, end), tok_l[start:end], ts_l[start:end], px_l[start:end],
                   vol_l[start:end], strict=True)
        for i, token, ts, price, volume in rows:
            tick: MarketTick | None = None
            if every_ex or (open_orders and token in open_orders):  # (usually empty)
                tick = eng.tick_at(i)
                eng.feed_exchange(token, i, tick)
                if runner.cancels:  # a replacement whose trimmed entry filled instead
                    eng.cancel(ts)
                every_ex = eng.exchange_every_tick
            if every_risk:
                tick = tick or eng.tick_at(i)
                eng.risk.on_tick(tick)
                if stops:
                    eng.daily_loss(i, ts)
                    every_ex = eng.exchange_every_tick
            if fresh:
                sigs = process(tick or eng.tick_at(i))
            else:
                # ``runner.process(view)``, inlined: same table, clock, order and rules
                slots = route.get(token)
                if slots is None:
                    continue
                view.ts = ts
                view.instrument_token = token
                view.last_price = price
                view.volume = volume
                if extras:
                    for name, values, nulls in extras:
                        setattr(view, name, None if nulls is not None and nulls[i] else values[i])
                clock.now_ns = ts
                ref = references[token]
                if ts >= ref.day_end:
                    ref.new_day(ts, price)
                ref.close = view.close
                sigs = None
                for slot in slots:
                    try:
                        out = slot.handler(view, slot.ctx)  # type: ignore[arg-type]
                    except Exception as exc:  # noqa: BLE001 - isolation, as in process
                        runner.fail_slot(slot, exc)
                        route = runner.dispatch()
                        continue
                    if slot.warmup_left:
                        runner.warming_up(slot, out)
                    elif ts >= slot.exit_ns:
                        sigs = runner.exiting(slot, out, view, sigs)  # type: ignore[arg-type]
                        route = runner.dispatch()
                    elif out:
                        sigs = runner.accept(slot, out, view, sigs)  # type: ignore[arg-type]
                        route = runner.dispatch()  # (a bad signal fails its strategy)
                if sys.getrefcount(view) > refs:
                    view = TickView()
            if sigs is not None:
                if sigs:
                    eng.signals(i, sigs, tick or eng.tick_at(i))
                    if stops:  # their fills, as the risk manager reads them after the tick
                        eng.daily_loss(i, ts)
                if runner.cancels:  # strategies cancel open orders (maybe with no signal)
                    eng.cancel(ts)
                every_ex = eng.exchange_every_tick
            if runner.halted:  # a strategy failed at this tick: its open orders go
                eng.halt(ts)
                every_ex = eng.exchange_every_tick
        start = end
        equity, gross = eng.sample(end - 1)
        samples.append((ts_l[end - 1], equity, gross))
        if report is not None:
            report(end, n)
    return samples


def _stderr_bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // total if total else width
    pct = 100 * done // total if total else 100
    sys.stderr.write(f"\rbacktest [{'#' * filled}{'.' * (width - filled)}] {pct:3d}% "
                     f"{done:,}/{total:,} ticks")
    sys.stderr.flush()
