"""A bracket's stop-loss and target follow what the strategy holds: its own exit cuts them
to what it leaves held when it fills (a full exit leaves none), an exit refused leaves them
protecting the position, and a CNC exit may sell what they reserve."""

from __future__ import annotations

from datetime import date, time

import numpy as np

from alpha_panda.backtest.engine import run_backtest
from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import (
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderSubmitted,
    Signal,
    derive_id,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from alpha_panda.marketdata.files import TickColumns
from alpha_panda.risk import RiskConfig, RiskLimits
from alpha_panda.strategy import Context, Strategy, StrategyParams
from alpha_panda.strategy.config import config_from_mapping

TOKEN = 738561
DAY = date(2026, 12, 3)
T0 = ist_ns(DAY, time(10))
S = 10**9


class ExitParams(StrategyParams):
    exits: tuple[int, ...] = (0,)
    limit: int | None = None  # the exits' limit price (paise), else at market


class BracketThenExits(Strategy):
    """A market buy of 10 with a stop ₹2 under and a target ₹5 over at its first tick;
    from its third, one market sell a tick of each of ``exits`` (0: all it holds)."""

    Params = ExitParams
    params: ExitParams

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        if self.n == 1:
            return [ctx.buy(10, stop_loss=tick.last_price - 200,
                            take_profit=tick.last_price + 500)]
        k = self.n - 3
        if 0 <= k < len(self.params.exits) and ctx.position():
            qty = self.params.exits[k] or ctx.position()
            if self.params.limit is not None:
                return [ctx.sell(qty, order_type=OrderType.LIMIT, limit_price=self.params.limit)]
            return [ctx.sell(qty)]
        return None


def day_of(prices: list[int], start: time = time(10)) -> TickColumns:
    """Ticks of ``TOKEN`` at ``prices``, a second apart from ``start``, the last at 15:21
    (past the MIS square-off)."""
    n = len(prices)
    ts = [ist_ns(DAY, start) + k * S for k in range(n - 1)] + [ist_ns(DAY, time(15, 21))]
    return TickColumns(ts=np.array(ts, dtype=np.int64),
                       instrument_token=np.full(n, TOKEN, dtype=np.int64),
                       last_price=np.array(prices, dtype=np.int64),
                       volume=np.ones(n, dtype=np.int64))


# entry at 100, exits at 100.50 and 99, the stop (98) fires at 97
FALL = [100_00, 101_00, 100_50, 99_00, 97_00, 96_00, 95_00]


def backtest(product: str, exits: tuple[int, ...], risk: RiskConfig | None = None,
             prices: list[int] = FALL, **extra: object) -> tuple[list[tuple[object, ...]],
                                                                 dict[str, object]]:
    config = config_from_mapping({
        "id": "s1", "strategy": f"{__name__}:BracketThenExits", "instruments": [TOKEN],
        "product": product, "exit_at": None, "params": {"exits": list(exits)},
        "execution": {"costs": False}, **extra})  # (``params`` in ``extra`` replaces them)
    result = run_backtest(config, day_of(prices), risk=risk)
    return ([(f.side, f.quantity, f.price, f.origin) for f in result.fills], result.summary)


def test_an_exit_the_risk_manager_refuses_leaves_the_stop_and_target_working() -> None:
    # The day's order limit refuses the exit. The runner had asked its stop and target
    # cancelled as it sent it: the position was left open with no stop, and the fall went
    # on to the square-off (bought at 100, sold at 95 instead of the stop's 97).
    one_a_day = RiskConfig(global_limits=RiskLimits(orders_per_day=1))
    fills, summary = backtest("MIS", (0,), one_a_day)
    assert summary["rejections"] == {"RATE_LIMIT_DAY": 1}
    assert fills == [(Side.BUY, 10, 100_00, "signal"), (Side.SELL, 10, 97_00, "bracket")]
    assert summary["open_positions"] == 0
    # and one passed takes them with it: no stop fires on the fall after it
    fills, summary = backtest("MIS", (0,))
    assert fills == [(Side.BUY, 10, 100_00, "signal"), (Side.SELL, 10, 100_50, "signal")]
    assert summary["orders_cancelled"] == 2


def test_a_partial_exit_cuts_the_stop_and_target_to_what_is_left() -> None:
    # The legs stayed at 10 after a sale of 4: the stop sold 10 of the 6 held, short 4
    # until the square-off bought them back.
    fills, summary = backtest("MIS", (4,))
    assert fills == [(Side.BUY, 10, 100_00, "signal"), (Side.SELL, 4, 100_50, "signal"),
                     (Side.SELL, 6, 97_00, "bracket")]
    assert summary["open_positions"] == 0
    # twice: 10, then 6, then 3 protected
    fills, summary = backtest("MIS", (4, 3))
    assert fills == [(Side.BUY, 10, 100_00, "signal"), (Side.SELL, 4, 100_50, "signal"),
                     (Side.SELL, 3, 99_00, "signal"), (Side.SELL, 3, 97_00, "bracket")]
    assert summary["open_positions"] == 0
    # the target takes what is left too, on a rise
    fills, _ = backtest("MIS", (4,), prices=[100_00, 101_00, 100_50, 103_00, 105_50, 106_00])
    assert fills == [(Side.BUY, 10, 100_00, "signal"), (Side.SELL, 4, 100_50, "signal"),
                     (Side.SELL, 6, 105_00, "bracket")]


def test_a_cnc_exit_of_a_bracketed_position_passes() -> None:
    # The legs reserved the holdings, so the venue refused the strategy's own exit
    # (CNC_SHORT): a delivery position with a bracket could only be closed by its legs.
    fills, summary = backtest("CNC", (0,))
    assert summary["rejections"] == {}
    assert fills == [(Side.BUY, 10, 100_00, "signal"), (Side.SELL, 10, 100_50, "signal")]
    assert summary["orders_cancelled"] == 2 and summary["open_positions"] == 0
    fills, summary = backtest("CNC", (4,))
    assert summary["rejections"] == {}
    assert fills == [(Side.BUY, 10, 100_00, "signal"), (Side.SELL, 4, 100_50, "signal"),
                     (Side.SELL, 6, 97_00, "bracket")]
    # a sell past the holdings is still refused, and the stop still protects them
    fills, summary = backtest("CNC", (11,))
    assert summary["rejections"] == {"CNC_SHORT": 1}
    assert fills == [(Side.BUY, 10, 100_00, "signal"), (Side.SELL, 10, 97_00, "bracket")]


def test_the_exchange_cuts_the_legs_and_places_them_again_for_the_rest() -> None:
    x = PaperExchange(ExecutionConfig(costs=False), seed=7)
    x.on_tick(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0))
    entry = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=10,
                   product=Product.MIS, price_hint=100_00, take_profit=105_00,
                   stop_loss=98_00)
    out = x.submit("e", entry, T0)
    legs = [e.order_id for e in out if isinstance(e, OrderSubmitted) and e.origin == "bracket"]
    assert len(legs) == 2
    exit_ = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.SELL, quantity=4,
                   product=Product.MIS, price_hint=100_50, reduce_only=True)
    out = x.submit("x", exit_, T0 + S)
    assert [(type(e).__name__, e.order_id) for e in out] == [
        ("OrderSubmitted", derive_id("x", "order")), ("OrderFilled", derive_id("x", "order")),
        ("OrderCancelled", legs[0]), ("OrderCancelled", legs[1]),
        ("OrderSubmitted", derive_id(legs[0], "cut")),
        ("OrderSubmitted", derive_id(legs[1], "cut"))]
    cancels = [e for e in out if isinstance(e, OrderCancelled)]
    assert {(e.reason, e.leaves_quantity) for e in cancels} == {("exit", 10)}
    placed = [e for e in out if isinstance(e, OrderSubmitted) and e.origin == "bracket"]
    assert [(e.side, e.quantity, e.limit_price, e.trigger_price, e.parent_order_id)
            for e in placed] == [(Side.SELL, 6, 105_00, None, derive_id("e", "order")),
                                 (Side.SELL, 6, None, 98_00, derive_id("e", "order"))]
    # one cancels the other still
    out = x.on_tick(MarketTick(instrument_token=TOKEN, last_price=97_00, ts=T0 + 2 * S))
    assert [(type(e).__name__, e.quantity if isinstance(e, OrderFilled) else e.reason)
            for e in out if isinstance(e, OrderFilled | OrderCancelled)] == [
        ("OrderFilled", 6), ("OrderCancelled", "oco")]
    assert x.open_orders() == []


def test_exit_at_keeps_the_stop_and_target_until_its_close_fills() -> None:
    # exit_at cancelled the legs, then closed the position: a close refused (here by the
    # day's order limit, sent again each minute) left it open with no stop on the fall.
    config = config_from_mapping({
        "id": "s1", "strategy": f"{__name__}:BracketThenExits", "instruments": [TOKEN],
        "product": "MIS", "exit_at": "10:00", "params": {"exits": []},
        "execution": {"costs": False}})
    ticks = day_of(FALL, start=time(9, 59, 58))  # the entry, then exit_at from the third
    one_a_day = RiskConfig(global_limits=RiskLimits(orders_per_day=1))
    result = run_backtest(config, ticks, risk=one_a_day)
    assert result.summary["rejections"] == {"RATE_LIMIT_DAY": 1}
    assert [(f.side, f.quantity, f.price, f.origin) for f in result.fills] == [
        (Side.BUY, 10, 100_00, "signal"), (Side.SELL, 10, 97_00, "bracket")]
    # passed, the close takes them with it
    result = run_backtest(config, ticks)
    assert [(f.side, f.quantity, f.price, f.origin) for f in result.fills] == [
        (Side.BUY, 10, 100_00, "signal"), (Side.SELL, 10, 100_50, "signal")]
    assert result.summary["orders_cancelled"] == 2 and result.summary["open_positions"] == 0


def test_a_resting_exit_goes_when_the_stop_closes_the_position_first() -> None:
    # A limit sell of all 10 rested above the market; the stop sold the 10 on the fall, and
    # the limit then sold 10 more on the bounce: short 10 (in CNC, delivery sold short).
    bounce = [100_00, 101_00, 100_50, 99_00, 97_00, 96_00, 104_50, 95_00]
    for product in ("MIS", "CNC"):
        fills, summary = backtest(product, (0,), prices=bounce,
                                  params={"exits": [0], "limit": 104_00})
        assert fills == [(Side.BUY, 10, 100_00, "signal"), (Side.SELL, 10, 97_00, "bracket")]
        assert summary["open_positions"] == 0 and summary["rejections"] == {}
        assert summary["orders_cancelled"] == 2  # the target (oco) and the exit


def test_an_entry_filled_in_parts_has_its_newest_pairs_cut_first() -> None:
    # Two fills of a bracket entry, 4 then 6, each with its own stop and target; selling 5
    # leaves 5: the newer pair is cut to 1, the older one keeps its 4.
    from decimal import Decimal

    x = PaperExchange(ExecutionConfig(costs=False, volume_participation=Decimal("0.5")), seed=7)
    entry = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=10,
                   product=Product.MIS, price_hint=100_00, take_profit=105_00,
                   stop_loss=98_00)
    x.submit("e", entry, T0)
    x.on_tick(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0 + S, volume=8,
                         last_quantity=8))
    x.on_tick(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0 + 2 * S, volume=20,
                         last_quantity=12))
    assert sorted(o.quantity for o in x.open_orders()) == [4, 4, 6, 6]
    exit_ = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.SELL, quantity=5,
                   product=Product.MIS, price_hint=100_00, reduce_only=True)
    x.submit("x", exit_, T0 + 3 * S)
    x.on_tick(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0 + 4 * S, volume=30,
                         last_quantity=10))
    assert sorted(o.quantity for o in x.open_orders()) == [1, 1, 4, 4]
    # the stop then sells the 5 held, in its two pairs
    out = x.on_tick(MarketTick(instrument_token=TOKEN, last_price=97_00, ts=T0 + 5 * S))
    assert sorted(e.quantity for e in out if isinstance(e, OrderFilled)) == [1, 4]
    assert x.open_orders() == []


def _rebuild_matches_live(product: Product, exit_qty: int, prices: list[int],
                          limit: int | None = None) -> list[tuple[str, Side, int, int, str]]:
    """The exchange in time (live), then rebuilt from the log as the paper engine does after
    a restart (every tick first, then the signals, knowing what it recorded): the same
    fills, cancels and open orders. The live fills."""
    from alpha_panda.domain.events import Payload
    from alpha_panda.domain.values import OrderType

    ticks = [MarketTick(instrument_token=TOKEN, last_price=p, ts=T0 + k * S)
             for k, p in enumerate(prices)]
    entry = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=10,
                   product=product, price_hint=prices[0], take_profit=105_00, stop_loss=98_00)
    exit_ = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.SELL, quantity=exit_qty,
                   product=product, price_hint=prices[2], reduce_only=True,
                   **({} if limit is None else {"order_type": OrderType.LIMIT,
                                               "limit_price": limit}))
    signals = [("e", entry, ticks[0].ts), ("x", exit_, ticks[2].ts)]
    live = PaperExchange(ExecutionConfig(costs=False), seed=7)
    out: list[Payload] = []
    for t in ticks:
        out += live.on_tick(t)
        out += [e for sid, sig, ts in signals if ts == t.ts for e in live.submit(sid, sig, ts)]
    rebuilt = PaperExchange(ExecutionConfig(costs=False), seed=7)
    rebuilt.recorded(out)
    again = [e for t in ticks for e in rebuilt.on_tick(t)]
    for sid, sig, ts in signals:
        again += rebuilt.submit(sid, sig, ts)
    rebuilt.recorded(())

    def seen(events: list[Payload]) -> list[tuple[object, ...]]:
        return sorted((type(e).__name__, e.order_id, getattr(e, "quantity", 0),
                       getattr(e, "reason", ""), e.ts)
                      for e in events if isinstance(e, OrderFilled | OrderCancelled))

    assert seen(again) == seen(out)
    assert [(o.order_id, o.leaves) for o in rebuilt.open_orders()] == [
        (o.order_id, o.leaves) for o in live.open_orders()]
    return [(e.order_id, e.side, e.quantity, e.price, e.origin)
            for e in out if isinstance(e, OrderFilled)]


def test_a_rebuild_after_a_restart_cuts_the_legs_as_the_live_engine_did() -> None:
    # A rebuild replays every tick before the signals: the legs, placed by the entry, met
    # the fall before the exit that had cut them live was processed, and the stop sold all
    # 10 again in the rebuilt book (a short the square-off would then have bought back).
    fall = [100_00, 101_00, 100_50, 99_00, 97_00, 96_00]
    for product in (Product.MIS, Product.CNC):
        fills = _rebuild_matches_live(product, 4, fall)
        assert [(side, q, px, origin) for _, side, q, px, origin in fills] == [
            (Side.BUY, 10, 100_00, "signal"), (Side.SELL, 4, 100_50, "signal"),
            (Side.SELL, 6, 97_00, "bracket")]
        fills = _rebuild_matches_live(product, 10, fall)
        assert len(fills) == 2
    # a resting exit the stop left nothing to sell: cancelled live, not filled in the rebuild
    fills = _rebuild_matches_live(Product.MIS, 10, fall + [104_50], limit=104_00)
    assert [(side, q, origin) for _, side, q, _, origin in fills] == [
        (Side.BUY, 10, "signal"), (Side.SELL, 10, "bracket")]


def test_a_bracket_entry_that_reverses_cuts_the_old_legs_and_protects_what_it_opened() -> None:
    # Short 10 with its buy legs; a bracket buy of 20 makes it long 10. The short's legs
    # go (they bought into the long before), and the new legs sell 10, not 20 (before: a
    # stop then sold the long 10 and 10 more, short again).
    x = PaperExchange(ExecutionConfig(costs=False), seed=7)

    def bracket(signal_id: str, side: Side, qty: int, tp: int, sl: int, k: int) -> list[object]:
        s = Signal(strategy_id="s1", instrument_token=TOKEN, side=side, quantity=qty,
                   product=Product.MIS, price_hint=100_00, take_profit=tp, stop_loss=sl)
        return [*x.submit(signal_id, s, T0 + k * S),
                *x.on_tick(MarketTick(instrument_token=TOKEN, last_price=100_00,
                                      ts=T0 + k * S + 1))]

    bracket("short", Side.SELL, 10, 95_00, 102_00, 1)
    assert sorted((o.side, o.leaves) for o in x.open_orders()) == [(Side.BUY, 10)] * 2
    out = bracket("long", Side.BUY, 20, 105_00, 98_00, 2)
    assert [e.reason for e in out if isinstance(e, OrderCancelled)] == ["exit", "exit"]
    assert sorted((o.side, o.leaves) for o in x.open_orders()) == [(Side.SELL, 10)] * 2
    out = x.on_tick(MarketTick(instrument_token=TOKEN, last_price=97_00, ts=T0 + 3 * S))
    assert [(e.side, e.quantity) for e in out if isinstance(e, OrderFilled)] == [(Side.SELL, 10)]
    assert x.open_orders() == []


def test_a_bracket_entry_that_ends_flat_gets_no_legs() -> None:
    x = PaperExchange(ExecutionConfig(costs=False), seed=7)
    for k, side in enumerate((Side.BUY, Side.SELL), 1):
        s = Signal(strategy_id="s1", instrument_token=TOKEN, side=side, quantity=10,
                   product=Product.MIS, price_hint=100_00, take_profit=100_00 + side.sign * 500,
                   stop_loss=100_00 - side.sign * 200)
        x.submit(f"e{k}", s, T0 + k * S)
        x.on_tick(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0 + k * S + 1))
    assert x.open_orders() == []
