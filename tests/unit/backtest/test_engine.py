"""The backtest engine: deterministic, exact, and identical to the naive per-tick order."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from alpha_panda.backtest.engine import run_backtest
from alpha_panda.backtest.metrics import sharpe
from alpha_panda.backtest.wiring import risk_config
from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import (
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    Signal,
    SignalRejected,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.config import execution_configs
from alpha_panda.execution.routing import PaperVenue
from alpha_panda.marketdata.files import TickColumns, generate_random_walk, iter_ticks, tick_id
from alpha_panda.portfolio.ledger import PositionLedger
from alpha_panda.risk import RiskEngine
from alpha_panda.strategy.base import CancelOrder, Context, Strategy, StrategyParams
from alpha_panda.strategy.config import StrategyConfig, config_from_mapping
from alpha_panda.strategy.runner import DEFAULT_STRATEGY_CASH, StrategyRunner, signal_ids


class LimitBracket(Strategy):
    """Every 7th tick while flat: a limit buy a tick below, with take-profit and stop-loss."""

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        if self.n % 7 or ctx.position() != 0:
            return None
        p = tick.last_price
        return [ctx.buy(2, order_type=OrderType.LIMIT, limit_price=p - 5, take_profit=p + 10,
                        stop_loss=p - 15)]


class Pairs(Strategy):
    """On its first instrument's ticks, trades the second one (no price hint there): a
    market buy, later a limit sell a little above that instrument's last price."""

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        if tick.instrument_token != 11:
            return None
        self.n += 1
        if self.n % 50 == 0 and ctx.position(12) == 0:
            return [ctx.buy(1, instrument_token=12)]
        if self.n % 50 == 25 and ctx.position(12) > 0:
            return [ctx.sell(1, instrument_token=12, order_type=OrderType.LIMIT,
                             limit_price=tick.last_price - 500)]
        return None


class UsesHigh(Strategy):
    """Reads an optional column: buys at the tick's ``high``, sells when it is missing."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        if tick.high is not None and tick.last_price >= tick.high and ctx.position() == 0:
            return [ctx.buy(1)]
        if tick.high is None and ctx.position() > 0:
            return [ctx.sell(ctx.position())]
        return None


class Keeper(UsesHigh):
    """The same, but keeps every tick it sees (so it gets real, immutable ticks)."""

    keeps_ticks = True

    def setup(self) -> None:
        self.kept: list[MarketTick] = []

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.kept.append(tick)
        assert all(t is not tick for t in self.kept[-3:-1])
        return super().on_tick(tick, ctx)


class Uptick(Strategy):
    """Buys 1 on an uptick, sells it on a downtick: keeps the previous tick to compare,
    without declaring ``keeps_ticks`` (as a trader writes it)."""

    def setup(self) -> None:
        self.prev: MarketTick | None = None

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        prev, self.prev = self.prev, tick
        if prev is None:
            return None
        if tick.last_price > prev.last_price and ctx.position() == 0:
            return [ctx.buy(1)]
        if tick.last_price < prev.last_price and ctx.position() > 0:
            return [ctx.sell(1)]
        return None


class UptickKeeper(Uptick):
    keeps_ticks = True


def test_a_strategy_that_keeps_a_tick_without_saying_so_trades_as_on_real_ticks() -> None:
    # The backtest hands a strategy one reused tick view: the previous tick it kept was the
    # tick it was looking at, never below or above it, and it never traded (0 fills, where
    # the live pipeline's real ticks made hundreds). A kept view is now left to it.
    kept = run_backtest(cfg("up", f"{__name__}:UptickKeeper", [11, 12]), TICKS)
    plain = run_backtest(cfg("up", f"{__name__}:Uptick", [11, 12]), TICKS)
    assert kept.summary["fills"] > 100
    assert plain.to_json(timings=False) == kept.to_json(timings=False)
    assert plain.fills == kept.fills


class Crash(Strategy):
    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        raise ZeroDivisionError("bad maths")


class RestThenCrash(Strategy):
    """A limit buy 3 ticks below at its 20th tick, then a bug at its 21st."""

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        if self.n == 20:
            return [ctx.buy(5, order_type=OrderType.LIMIT, limit_price=tick.last_price - 15)]
        if self.n == 21:
            raise RuntimeError("bug in my strategy")
        return None


class Requoter(Strategy):
    """Keeps a limit buy of 3 resting 3 ticks under the market; when the market runs 8
    ticks above it, cancels it and quotes again; sells at market what filled. Fails if its intended
    position is ever other than what filled plus what still works (no latency: nothing is
    in flight between two ticks)."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        working = ctx.open_orders()
        pending = sum(o.leaves_quantity * o.side.sign for o in working)
        if ctx.position() != ctx.filled() + pending:
            raise AssertionError(f"{ctx.position()} != {ctx.filled()} + {pending}")
        out: list[Signal | CancelOrder] = []
        if ctx.filled() > 0:
            out.append(ctx.sell(ctx.filled()))
        bids = [o for o in working if o.side is Side.BUY]
        t = ctx.tick_size()
        out += [ctx.cancel(o) for o in bids
                if not o.cancel_requested and (o.limit_price or 0) < tick.last_price - 8 * t]
        if not bids:
            out.append(ctx.buy(3, order_type=OrderType.LIMIT,
                               limit_price=(tick.last_price // t - 3) * t))
        return out or None


def cfg(sid: str, strategy: str, tokens: list[int], **extra: Any) -> StrategyConfig:
    return config_from_mapping({"id": sid, "strategy": strategy, "instruments": tokens, **extra})


TICKS = generate_random_walk(6000, [11, 12, 13], seed=9)
SMA = cfg("sma", "sma_cross", [11, 12, 13], params={"fast": 3, "slow": 8, "quantity": 2})
BRACKET = cfg("br", f"{__name__}:LimitBracket", [11, 12],
              execution={"costs": True, "latency_ms": 1, "slippage_bps": 5})


def naive(configs: list[StrategyConfig], cols: TickColumns, source: str, *,
          halt: bool = True, cancelled: list[OrderCancelled] | None = None,
          ) -> tuple[list[OrderFilled], PositionLedger]:
    """The pipeline's order of operations, every call on every tick, nothing skipped
    (``halt=False``: a failed strategy's orders stay on the book; ``cancelled`` collects
    the cancellations)."""
    runner = StrategyRunner(configs)
    risk = RiskEngine(risk_config(configs))
    venue = PaperVenue(execution_configs(configs))
    ledger = PositionLedger(DEFAULT_STRATEGY_CASH * len(configs),
                            strategy_cash={c.id: DEFAULT_STRATEGY_CASH for c in configs})
    fills: list[OrderFilled] = []

    def route(payloads: list[Payload]) -> None:
        for p in payloads:
            if isinstance(p, OrderFilled):
                ledger.apply_fill(p)
                risk.on_fill(p)
                runner.on_fill(p)
                fills.append(p)
            elif isinstance(p, OrderSubmitted):
                runner.on_order_submitted(p)
            elif isinstance(p, OrderRejected):
                risk.on_order_rejected(p)
                runner.on_order_rejected_event(p)
            elif isinstance(p, OrderCancelled):
                risk.on_order_cancelled(p)
                runner.on_order_cancelled_event(p)
                if cancelled is not None:
                    cancelled.append(p)

    for seq, tick in enumerate(iter_ticks(cols)):
        route(venue.on_tick(tick))
        ledger.mark(tick.instrument_token, tick.last_price)
        risk.on_tick(tick)
        sigs = runner.on_tick(tick)
        for sid, sig in zip(signal_ids(tick_id(source, seq), sigs), sigs, strict=True):
            decision = risk.check(sid, sig, tick.ts)
            if isinstance(decision, SignalRejected):
                runner.on_signal_rejected(sig)
                continue
            route(venue.submit(sid, sig, tick.ts))
        for _, order in runner.take_cancels():
            route(venue.cancel(order.order_id, tick.ts, "strategy"))
        for failed, _ in runner.take_halted():
            if halt:
                route(venue.kill(tick.ts, failed, keep_exits=True))
    return fills, ledger


PAIRS = cfg("pairs", f"{__name__}:Pairs", [11, 12], execution={"costs": True})


@pytest.mark.parametrize("configs", [[SMA], [BRACKET], [SMA, BRACKET], [PAIRS], [PAIRS, BRACKET]],
                         ids=["market", "limit+bracket+latency", "both", "cross-instrument", "mixed"])
def test_same_fills_and_pnl_as_the_naive_per_tick_pipeline(configs: list[StrategyConfig]) -> None:
    result = run_backtest(configs, TICKS, source="replay:t.csv")
    fills, ledger = naive(configs, TICKS, "replay:t.csv")
    assert len(fills) > 50
    for sid in {c.id for c in configs}:
        assert {f.side for f in fills if f.strategy_id == sid} == {Side.BUY, Side.SELL}
    assert result.fills == fills
    snap = ledger.snapshot(None)
    s = result.summary
    assert s["realized_pnl"] == _r(snap.realized)
    assert s["unrealized_pnl"] == _r(snap.unrealized)
    assert s["charges"] == _r(snap.charges)


def _r(paise: int) -> str:
    from alpha_panda.backtest.result import rupees
    return rupees(paise)


WITH_HIGH = TickColumns(
    TICKS.ts, TICKS.instrument_token, TICKS.last_price, TICKS.volume,
    {"high": TICKS.last_price + 5 * (np.arange(len(TICKS)) % 3 - 1)},
    {"high": np.arange(len(TICKS)) % 7 == 0},
)


@pytest.mark.parametrize("name", ["UsesHigh", "Keeper"])
def test_optional_columns_reach_strategies_as_in_the_pipeline(name: str) -> None:
    config = cfg("hi", f"{__name__}:{name}", [11, 12])
    result = run_backtest(config, WITH_HIGH)
    fills, _ = naive([config], WITH_HIGH, "replay:backtest")
    assert len(fills) > 100 and result.fills == fills


def test_identical_output_on_every_run() -> None:
    a = run_backtest([SMA, BRACKET], TICKS)
    b = run_backtest([SMA, BRACKET], TICKS)
    assert a.to_json(timings=False) == b.to_json(timings=False)
    assert a.fills == b.fills and a.equity == b.equity


def test_market_fills_happen_at_the_signal_tick_price_and_pnl_is_exact() -> None:
    result = run_backtest(SMA, TICKS)
    price_at = {}
    for tick in iter_ticks(TICKS):
        price_at.setdefault(tick.ts, {})[tick.instrument_token] = tick.last_price
    cash = 0
    held: dict[int, int] = {}
    for f in result.fills:
        assert f.price == price_at[f.ts][f.instrument_token]
        cash -= f.side.sign * f.quantity * f.price + f.charges.total
        held[f.instrument_token] = held.get(f.instrument_token, 0) + f.side.sign * f.quantity
    last = {int(t): int(TICKS.last_price[TICKS.instrument_token == t][-1]) for t in held}
    net = cash + sum(q * last[t] for t, q in held.items())
    s = result.summary
    assert s["net_pnl"] == _r(net)
    assert Decimal(s["charges"]) > 0 and result.fills[0].charges.total > 0  # costs on: default
    assert s["fills"] == len(result.fills) and s["round_trips"] == len(result.round_trips)
    assert 0 <= s["win_rate"] <= 1 and s["ticks"] == 6000


def test_costs_off_means_zero_charges() -> None:
    result = run_backtest(cfg("s", "sma_cross", [11], params={"fast": 3, "slow": 8},
                              execution={"costs": False}), TICKS)
    assert result.summary["charges"] == "0.00" and result.summary["fills"] > 0
    assert all(f.charges.total == 0 for f in result.fills)


def test_round_trips_sum_to_realized_minus_charges_when_flat() -> None:
    result = run_backtest(SMA, TICKS)
    closed = {(t.strategy_id, t.instrument_token) for t in result.round_trips}
    assert closed
    flat = [p for p in result.positions if p["quantity"] == 0]
    for p in flat:
        trips = [t.pnl for t in result.round_trips
                 if (t.strategy_id, t.instrument_token) == (p["strategy_id"], p["instrument_token"])]
        assert Decimal(sum(trips)) / 100 == Decimal(p["realized"]) - Decimal(p["charges"])


def test_risk_rejections_feed_back_and_are_counted() -> None:
    capped = cfg("capped", "sma_cross", [11], params={"fast": 3, "slow": 8, "quantity": 5},
                 risk={"max_position": 3})
    result = run_backtest(capped, TICKS)
    s = result.summary
    assert s["fills"] == 0 and s["signals_rejected"] == s["signals"] > 0
    assert s["rejections"] == {"MAX_POSITION": s["signals"]}


def test_a_failing_strategy_is_isolated() -> None:
    result = run_backtest([cfg("crash", f"{__name__}:Crash", [11]), SMA], TICKS)
    assert result.summary["strategies_failed"] == ["crash"]
    assert result.summary["fills"] > 0


def test_a_failed_strategys_resting_orders_are_cancelled_and_never_fill() -> None:
    crash = cfg("rc", f"{__name__}:RestThenCrash", [11])
    result = run_backtest([crash, SMA], TICKS, source="replay:t.csv")
    assert result.summary["strategies_failed"] == ["rc"]
    assert result.summary["orders_cancelled"] >= 1
    assert not [f for f in result.fills if f.strategy_id == "rc"]
    # the same order fills later when the strategy lives on: the cancel is what stops it
    fills, _ = naive([cfg("rc", f"{__name__}:RestThenCrash", [11])], TICKS, "t", halt=False)
    assert [f.quantity for f in fills] == [5]
    fills, _ = naive([crash, SMA], TICKS, "replay:t.csv")
    assert fills == result.fills


class BracketThenCrash(Strategy):
    """A market buy of 5 with a stop-loss at 890 and a target at 920 at its first tick, then
    a bug at its third."""

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        if self.n == 1:
            return [ctx.buy(5, stop_loss=890_00, take_profit=920_00)]
        if self.n == 3:
            raise RuntimeError("bug after entering")
        return None


def test_a_failed_strategys_stop_loss_keeps_protecting_what_it_holds() -> None:
    # its own orders go when it fails, but not a bracket's exits: the position it holds
    # stays protected (they used to be cancelled, leaving it open until the square-off)
    prices = [900_00, 901_00, 902_00, 895_00, 889_00, 880_00]
    ticks = TickColumns(ts=ist_ns(date(2026, 12, 3), time(10)) + np.arange(6) * 10**9,
                        instrument_token=np.full(6, 11, dtype=np.int64),
                        last_price=np.array(prices, dtype=np.int64), volume=np.ones(6, dtype=np.int64))
    result = run_backtest([cfg("b", f"{__name__}:BracketThenCrash", [11])], ticks)
    assert result.summary["strategies_failed"] == ["b"]
    assert [(f.side, f.quantity, f.price, f.origin) for f in result.fills] == [
        (Side.BUY, 5, 900_00, "signal"), (Side.SELL, 5, 889_00, "bracket")]
    assert result.summary["open_positions"] == 0
    fills, _ = naive([cfg("b", f"{__name__}:BracketThenCrash", [11])], ticks, "t")
    assert [(f.side, f.origin) for f in fills] == [(Side.BUY, "signal"), (Side.SELL, "bracket")]


def test_equity_samples_and_drawdown() -> None:
    result = run_backtest(SMA, TICKS)
    ts = [t for t, _, _ in result.equity]
    assert ts == sorted(ts) and ts[-1] == int(TICKS.ts[-1])
    s = result.summary
    assert Decimal(s["final_equity"]) - Decimal(s["initial_equity"]) == Decimal(s["net_pnl"])
    assert Decimal(s["max_drawdown"]) >= 0


class BuyAndHold(Strategy):
    """Buys 100 at its first tick and holds them."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        return [ctx.buy(100)] if ctx.position() == 0 else None


def test_sharpe_of_a_long_file_is_of_every_days_close() -> None:
    # 800 weekdays (three years) of an open and a close tick: the ~1,000-point grid's step
    # is longer than a night, so the grid alone skips days and dates closes mid-session.
    rng = np.random.default_rng(3)
    days = [d for d in np.arange(np.datetime64("2021-01-04"), np.datetime64("2024-12-31"))
            .astype(object) if d.weekday() < 5][:800]
    ts = [ist_ns(d, t) for d in days for t in (time(9, 15), time(15, 29))]
    px = (100_000 + np.cumsum(rng.integers(-40, 41, len(ts)) * 5)).tolist()
    cols = TickColumns(np.array(ts, dtype=np.int64), np.full(len(ts), 11, dtype=np.int64),
                       np.array(px, dtype=np.int64), np.full(len(ts), 100, dtype=np.int64))
    result = run_backtest(cfg("hold", f"{__name__}:BuyAndHold", [11],
                              execution={"costs": False}), cols)
    assert [(f.quantity, f.price) for f in result.fills] == [(100, px[0])]
    sampled = {t for t, _, _ in result.equity}
    assert all(t in sampled for t in ts[1::2])  # each day's last tick
    # independently: the equity at each day's close, from the file's closes
    closes = [(t, DEFAULT_STRATEGY_CASH + 100 * (p - px[0])) for t, p in zip(ts, px, strict=True)]
    assert result.summary["sharpe"] == round(sharpe(closes[1::2], DEFAULT_STRATEGY_CASH), 6)
    assert result.summary["sharpe"] == -1.009027  # the grid alone: -1.04871


def test_empty_ticks() -> None:
    empty = TickColumns(*(np.zeros(0, dtype=np.int64) for _ in range(4)))
    result = run_backtest(SMA, empty)
    assert result.summary["ticks"] == 0 and result.summary["fills"] == 0


class GridLimits(Strategy):
    """Every 5th tick: a limit buy a little under the market, rounded down to a tick taken
    the new way (``ctx.tick_size()``) or the old advice's (from the current price)."""

    class Params(StrategyParams):
        old_advice: bool = False

    params: Params

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        if self.n % 5:
            return None
        t = (ctx.tick_size(tick.close or tick.last_price) if self.params.old_advice
             else ctx.tick_size())
        price = (tick.last_price - 35) // t * t
        return [ctx.buy(1, order_type=OrderType.LIMIT, limit_price=price, product=Product.MIS)]


def test_limit_prices_on_ctx_tick_size_are_on_the_exchanges_grid() -> None:
    # No ``close`` column: the exchange takes the tick from the day's first price, ₹1,001
    # (0.10 since April 2025), while the price trades at ~₹998 (0.05) most of the day.
    day = ist_ns(date(2026, 12, 1), time(10, 0))
    prices = [1001_00] + [998_00 + 5 * (k % 4) for k in range(99)]
    cols = TickColumns(
        ts=np.array([day + k * 1_000_000_000 for k in range(100)], dtype=np.int64),
        instrument_token=np.full(100, 11, dtype=np.int64),
        last_price=np.array(prices, dtype=np.int64), volume=np.zeros(100, dtype=np.int64))
    rejected = {}
    for old_advice in (False, True):
        config = cfg("g", f"{__name__}:GridLimits", [11], params={"old_advice": old_advice})
        result = run_backtest(config, cols)
        rejected[old_advice] = result.summary["rejections"].get("TICK_SIZE", 0)
        assert result.summary["orders"] + rejected[old_advice] == 20
    assert rejected == {False: 0, True: 10}  # old: the prices on 0.05 but not on 0.10


def test_a_strategy_cancels_and_requotes_and_sees_what_filled_and_what_works() -> None:
    requoter = cfg("rq", f"{__name__}:Requoter", [11, 12], execution={"costs": True})
    result = run_backtest([requoter], TICKS, source="replay:t.csv")
    s = result.summary
    assert s["strategies_failed"] == []  # what it saw always added up
    assert s["orders_cancelled"] > 10 and len(result.fills) > 10
    cancelled: list[OrderCancelled] = []
    fills, _ = naive([requoter], TICKS, "replay:t.csv", cancelled=cancelled)
    assert fills == result.fills
    assert len(cancelled) == s["orders_cancelled"]
    assert cancelled and {c.reason for c in cancelled} == {"strategy"}
    assert all(c.filled_quantity == 0 and c.leaves_quantity == 3 for c in cancelled)
