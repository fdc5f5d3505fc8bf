"""An exit never opens a position: the runner marks a signal that takes the strategy's
position toward flat ``reduce_only``, and each broker's risk manager passes it only where it
reduces the position held there (``REDUCE_ONLY``)."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import numpy as np

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import MarketTick, Signal, SignalRejected, SignalValidated
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.marketdata.files import TickColumns
from alpha_panda.risk import RiskConfig, RiskEngine, RiskLimits
from alpha_panda.strategy import Context, Strategy, StrategyParams
from alpha_panda.strategy.base import CancelOrder
from alpha_panda.strategy.config import config_from_mapping
from alpha_panda.strategy.runner import StrategyRunner

TOKEN = 738561
T0 = ist_ns(date(2026, 11, 23), time(10, 0))


class Script(Strategy):
    """Buys 10 at its first tick, sells 4 at its second, 10 at its third (a reversal)."""

    Params = StrategyParams

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        side, qty = {1: (Side.BUY, 10), 2: (Side.SELL, 4), 3: (Side.SELL, 10)}[self.n]
        return [ctx.signal(side, qty, product=Product.MIS)]


def test_the_runner_marks_exits_and_only_exits() -> None:
    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:Script",
                                  "instruments": [TOKEN], "product": "MIS", "exit_at": None})
    runner = StrategyRunner([config])
    marks = []
    for k in range(3):
        (sig,) = runner.process(MarketTick(instrument_token=TOKEN, last_price=100_00,
                                           ts=T0 + k)) or []
        marks.append((sig.side, sig.quantity, sig.reduce_only))
    # the sell of 10 against 6 held reverses: not an exit
    assert marks == [(Side.BUY, 10, False), (Side.SELL, 4, True), (Side.SELL, 10, False)]


def exit_of(qty: int) -> Signal:
    return Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.SELL, quantity=qty,
                  product=Product.MIS, price_hint=100_00, reduce_only=True)


def test_an_exit_where_nothing_is_held_is_refused_even_with_no_limit_set() -> None:
    # a second broker that did not take the entry (its kill switch was on, say): the
    # strategy's exit must not open a short there
    risk = RiskEngine(RiskConfig(), broker="zerodha")
    decision = risk.check("x", exit_of(10), T0)
    assert isinstance(decision, SignalRejected) and decision.reason_code == "REDUCE_ONLY"
    assert "would open or reverse a position on zerodha, where the strategy holds 0" in (
        decision.message)


def test_an_exit_of_what_is_held_passes_and_one_beyond_it_does_not() -> None:
    risk = RiskEngine(RiskConfig(global_limits=RiskLimits(max_position=50)), broker="paper")
    entry = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=10,
                   product=Product.MIS, price_hint=100_00)
    assert isinstance(risk.check("e", entry, T0), SignalValidated)  # pending: held
    assert isinstance(risk.check("x1", exit_of(10), T0), SignalValidated)
    decision = risk.check("x2", exit_of(1), T0)  # the first exit took it all
    assert isinstance(decision, SignalRejected) and decision.reason_code == "REDUCE_ONLY"


def test_a_second_broker_holds_no_more_than_the_strategy_means_to() -> None:
    # paper (the strategy's first broker) refused the entry, so the strategy signals it
    # again; zerodha took the first one: its copy of the repeat would double the position
    risk = RiskEngine(RiskConfig(), broker="zerodha")
    entry = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=20,
                   product=Product.CNC, price_hint=100_00, target=20, follows="paper")
    assert isinstance(risk.check("e1", entry, T0), SignalValidated)
    decision = risk.check("e2", entry, T0 + 1)
    assert isinstance(decision, SignalRejected) and decision.reason_code == "EXCEEDS_INTENT"
    assert decision.message == ("zerodha would hold 40 where the strategy means to hold 20: it "
                                "follows paper's fills, and paper did not take what this one did")
    # the first broker's own copy is not bounded here (it is what the intent follows)
    first = RiskEngine(RiskConfig(), broker="paper")
    for n in range(2):
        own = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=20,
                     product=Product.CNC, price_hint=100_00, target=20)
        assert isinstance(first.check(f"p{n}", own, T0), SignalValidated)


def test_the_copy_for_a_second_broker_says_whose_fills_it_follows() -> None:
    from alpha_panda.domain.events import new_envelope
    from alpha_panda.services.strategy_runner import SignalFanout

    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:Script",
                                  "instruments": [TOKEN], "brokers": ["paper", "zerodha"],
                                  "product": "MIS", "exit_at": None})
    runner = StrategyRunner([config])
    tick = MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0)
    signals = runner.process(tick) or []
    emits = SignalFanout(runner, [])._emits(
        new_envelope(tick, id="t0", ts=T0, source="feed", key=str(TOKEN)), signals)
    copies = {e.topic: e.envelope.data for e in emits}
    assert {t: (s.target, s.follows) for t, s in copies.items()} == {  # type: ignore[union-attr]
        "paper.signals.raw": (10, ""), "zerodha.signals.raw": (10, "paper")}


def follower_holding(filled: int) -> RiskEngine:
    """zerodha's risk manager, following paper, after an entry of 10 of which ``filled``
    filled there (the rest cancelled)."""
    from alpha_panda.domain.events import OrderCancelled, OrderFilled, derive_id

    risk = RiskEngine(RiskConfig(), broker="zerodha")
    entry = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=10,
                   product=Product.MIS, price_hint=100_00, target=10, follows="paper")
    assert isinstance(risk.check("e", entry, T0), SignalValidated)
    oid = derive_id("e", "order")
    risk.on_fill(OrderFilled(order_id=oid, fill_id=f"{oid}-f", strategy_id="s1",
                             instrument_token=TOKEN, side=Side.BUY, quantity=filled,
                             price=100_00, cumulative_quantity=filled,
                             leaves_quantity=10 - filled, average_price=100_00,
                             product=Product.MIS, ts=T0))
    if filled < 10:
        risk.on_order_cancelled(OrderCancelled(
            order_id=oid, strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
            filled_quantity=filled, leaves_quantity=10 - filled, reason="ioc", ts=T0))
    assert risk.position("s1", TOKEN) == filled
    return risk


def test_a_second_broker_may_always_move_toward_the_intent() -> None:
    # zerodha filled the whole entry of 10; paper 6 (the rest cancelled): the intent is 6,
    # and the strategy's exit of 6 (target 0) takes zerodha from 10 to 4, toward it
    risk = follower_holding(10)
    exit_ = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.SELL, quantity=6,
                   product=Product.MIS, price_hint=100_00, target=0, follows="paper",
                   reduce_only=True)
    assert isinstance(risk.check("x", exit_, T0 + 1), SignalValidated)


def test_a_second_broker_sizes_down_to_the_intent_what_would_go_past_it() -> None:
    # zerodha filled 4 of the entry of 10 (the rest cancelled), paper all 10: the strategy
    # exits 10 (target 0). Refused whole, zerodha would keep 4 with the strategy flat; it
    # sells the 4 it holds.
    risk = follower_holding(4)
    exit_ = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.SELL, quantity=10,
                   product=Product.MIS, price_hint=100_00, target=0, follows="paper",
                   reduce_only=True)
    decision = risk.check("x", exit_, T0 + 1)
    assert isinstance(decision, SignalValidated)
    assert decision.signal.quantity == 4
    assert decision.message == ("4 of the 10 asked: zerodha then holds 0, the strategy's "
                                "intent (it follows paper's fills)")
    assert risk.check("x", exit_, T0 + 1) is decision  # redelivered: the same answer
    # what it sold counts as pending: nothing is left to exit
    again = risk.check("x2", exit_of(1), T0 + 2)
    assert isinstance(again, SignalRejected) and again.reason_code == "REDUCE_ONLY"
    # an entry that would go past the intent buys what reaches it, and never more than asked
    top_up = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=20,
                    product=Product.MIS, price_hint=100_00, target=5, follows="paper")
    sized = risk.check("e2", top_up, T0 + 3)
    assert isinstance(sized, SignalValidated) and sized.signal.quantity == 5
    behind = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=3,
                    product=Product.MIS, price_hint=100_00, target=30, follows="paper")
    kept = risk.check("e3", behind, T0 + 4)
    assert isinstance(kept, SignalValidated) and kept.signal.quantity == 3 and not kept.message


def test_a_sized_copy_is_judged_at_its_size_and_rebuilt_at_it() -> None:
    follower = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=20,
                      product=Product.MIS, price_hint=100_00, target=5, follows="paper")
    # refused at the size taken: the message says it was sized, the signal is as asked
    small = RiskEngine(RiskConfig(global_limits=RiskLimits(max_order_qty=3)), broker="zerodha")
    refused = small.check("e", follower, T0)
    assert isinstance(refused, SignalRejected) and refused.reason_code == "MAX_ORDER_QTY"
    assert refused.signal.quantity == 20
    assert refused.message.endswith("(sized to 5 of the 20 asked: zerodha then holds 5, the "
                                     "strategy's intent (it follows paper's fills))")
    # a sized decision read back after a restart holds what was sized as pending, not the ask
    live = RiskEngine(RiskConfig(), broker="zerodha")
    decision = live.check("e", follower, T0)
    assert isinstance(decision, SignalValidated) and decision.signal.quantity == 5
    rebuilt = RiskEngine(RiskConfig(), broker="zerodha")
    rebuilt.replay_decision(decision, T0)
    assert rebuilt.position("s1", TOKEN) == live.position("s1", TOKEN) == 5
    # and the kill switch stops a copy that would be sized
    live.set_kill_switch(True)
    more = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=20,
                  product=Product.MIS, price_hint=100_00, target=10, follows="paper")
    blocked = live.check("e2", more, T0 + 1)
    assert isinstance(blocked, SignalRejected) and blocked.reason_code == "KILL_SWITCH"


class LimitEntryThenExit(Strategy):
    """A limit buy of 10 a rupee under the market at its first tick; at its second, the
    exit of what it means to hold (``ctx.position()``: the resting entry counts) but
    ``keep``; with ``cancel_first``, it cancels its open orders at its second tick and
    exits at its third."""

    class Params(StrategyParams):
        keep: int = 0
        cancel_first: bool = False

    params: Params

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        self.n += 1
        if self.n == 1:
            return [ctx.buy(10, order_type=OrderType.LIMIT, limit_price=tick.last_price - 100)]
        if self.n == 2 and self.params.cancel_first:
            return [ctx.cancel(o) for o in ctx.open_orders()]
        if self.n == 2 + self.params.cancel_first and ctx.position() > self.params.keep:
            return [ctx.sell(ctx.position() - self.params.keep)]
        return None


def day_of(prices: list[int]) -> TickColumns:
    """Ticks of ``TOKEN`` at ``prices``, a second apart from 10:00, the last at 15:21 (past
    the MIS square-off)."""
    day = date(2026, 12, 3)
    n = len(prices)
    ts = [ist_ns(day, time(10)) + k * 10**9 for k in range(n - 1)] + [ist_ns(day, time(15, 21))]
    return TickColumns(ts=np.array(ts, dtype=np.int64),
                       instrument_token=np.full(n, TOKEN, dtype=np.int64),
                       last_price=np.array(prices, dtype=np.int64),
                       volume=np.ones(n, dtype=np.int64))


def test_an_exit_of_a_resting_entry_cancels_it_and_never_sells_short() -> None:
    # The entry rests unfilled and the market runs away from it. The exit used to pass
    # (the resting entry counts as held) and sell 10 at once: short 10 with no such intent,
    # bought back by the 15:20 square-off at a loss. It cancels the entry instead.
    from alpha_panda.backtest.engine import run_backtest

    ticks = day_of([100_00, 101_00, 102_00, 103_00, 104_00, 105_00])
    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:LimitEntryThenExit",
                                  "instruments": [TOKEN], "product": "MIS", "exit_at": None})
    result = run_backtest(config, ticks)
    assert [(f.side, f.quantity, f.origin) for f in result.fills] == []
    assert result.summary["orders_cancelled"] == 1
    assert result.summary["open_positions"] == 0 and result.summary["realized_pnl"] == "0.00"


class BracketThenExit(Strategy):
    """A market buy of 5 with a stop ₹2 under and a target ₹5 over; at its third tick,
    the market exit of all of it."""

    Params = StrategyParams

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        if self.n == 1:
            return [ctx.buy(5, stop_loss=tick.last_price - 200,
                            take_profit=tick.last_price + 500)]
        if self.n == 3 and ctx.position():
            return [ctx.sell(ctx.position())]
        return None


def test_a_market_exit_of_a_bracketed_position_takes_its_stop_and_target_with_it() -> None:
    # The stop-loss leg stayed after the strategy closed the position itself, and fired
    # on the fall: a sell of 5 more, short, bought back by the square-off.
    from alpha_panda.backtest.engine import run_backtest

    ticks = day_of([100_00, 101_00, 100_50, 99_00, 97_00, 96_00, 95_00])
    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:BracketThenExit",
                                  "instruments": [TOKEN], "product": "MIS", "exit_at": None})
    result = run_backtest(config, ticks)
    assert [(f.side, f.quantity, f.price, f.origin) for f in result.fills] == [
        (Side.BUY, 5, 100_00, "signal"), (Side.SELL, 5, 100_50, "signal")]
    assert result.summary["orders_cancelled"] == 2  # the stop and the target
    # In CNC too: the exit may sell what the legs reserve (it was refused CNC_SHORT)
    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:BracketThenExit",
                                  "instruments": [TOKEN], "product": "CNC"})
    result = run_backtest(config, ticks)
    assert result.summary["rejections"] == {}
    assert [(f.side, f.quantity, f.price, f.origin) for f in result.fills] == [
        (Side.BUY, 5, 100_00, "signal"), (Side.SELL, 5, 100_50, "signal")]


def entry_resting(filled: int, **params: Any) -> tuple[StrategyRunner, str]:
    """A runner whose strategy (``LimitEntryThenExit`` with ``params``) rests a limit buy
    of 10, of which ``filled`` filled; and the entry's order id."""
    from alpha_panda.domain.events import OrderFilled, OrderSubmitted, derive_id

    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:LimitEntryThenExit",
                                  "instruments": [TOKEN], "product": "MIS", "exit_at": None,
                                  "params": params})
    runner = StrategyRunner([config])
    (entry,) = runner.process(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0)) or []
    oid = derive_id("e", "order")
    runner.on_order_submitted(OrderSubmitted(
        order_id=oid, signal_id="e", strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        quantity=10, order_type=OrderType.LIMIT, limit_price=entry.limit_price,
        product=Product.MIS, ts=T0))
    if filled:
        runner.on_fill(OrderFilled(
            order_id=oid, fill_id=f"{oid}-f0", strategy_id="s1", instrument_token=TOKEN,
            side=Side.BUY, quantity=filled, price=99_00, cumulative_quantity=filled,
            leaves_quantity=10 - filled, average_price=99_00, product=Product.MIS, ts=T0))
    return runner, oid


def test_an_exit_sells_what_is_filled_and_cancels_the_rest_of_the_entry() -> None:
    from alpha_panda.domain.events import OrderCancelled

    runner, oid = entry_resting(4)
    (exit_,) = runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00,
                                         ts=T0 + 1)) or []
    assert (exit_.side, exit_.quantity, exit_.reduce_only, exit_.target) == (
        Side.SELL, 4, True, 0)
    assert [(sid, o.order_id) for sid, o in runner.take_cancels()] == [("s1", oid)]
    assert runner.position("s1", TOKEN) == 0  # the strategy sees its exit taken at once
    runner.on_order_cancelled_event(OrderCancelled(
        order_id=oid, strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        filled_quantity=4, leaves_quantity=6, reason="strategy", ts=T0 + 1))
    assert runner.position("s1", TOKEN) == 0


def test_what_of_a_cancelled_entry_fills_first_stays_held_and_shown() -> None:
    # The venue filled 3 more of the entry before the cancel landed (the pipeline tells
    # the runner of fills late): the strategy holds 3, and its position says so.
    from alpha_panda.domain.events import OrderCancelled, OrderFilled

    runner, oid = entry_resting(4)
    runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00, ts=T0 + 1))
    runner.on_fill(OrderFilled(
        order_id=oid, fill_id=f"{oid}-f1", strategy_id="s1", instrument_token=TOKEN,
        side=Side.BUY, quantity=3, price=99_00, cumulative_quantity=7, leaves_quantity=3,
        average_price=99_00, product=Product.MIS, ts=T0 + 1))
    runner.on_order_cancelled_event(OrderCancelled(
        order_id=oid, strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        filled_quantity=7, leaves_quantity=3, reason="strategy", ts=T0 + 1))
    assert runner.position("s1", TOKEN) == 3
    # and all of it: the cancel came too late, the entry ended filled
    runner, oid = entry_resting(0)
    assert runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00,
                                     ts=T0 + 1)) == []  # nothing to sell: only the cancel
    assert runner.position("s1", TOKEN) == 0
    runner.on_fill(OrderFilled(
        order_id=oid, fill_id=f"{oid}-f1", strategy_id="s1", instrument_token=TOKEN,
        side=Side.BUY, quantity=10, price=99_00, cumulative_quantity=10, leaves_quantity=0,
        average_price=99_00, product=Product.MIS, ts=T0 + 1))
    assert runner.position("s1", TOKEN) == 10


def test_an_exit_cancels_an_entry_larger_than_its_unfilled_part_and_sells_less() -> None:
    # 4 filled, 6 resting, and the strategy keeps 2 of the 10 it means to hold: it cancels
    # the 6 and sells 2 (selling 8 of the 4 filled would leave it short 4 if the 6 never fill)
    runner, oid = entry_resting(4, keep=2)
    (exit_,) = runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00,
                                         ts=T0 + 1)) or []
    assert (exit_.quantity, exit_.target) == (2, 2)
    assert [o.order_id for _, o in runner.take_cancels()] == [oid]



def test_an_exit_smaller_than_a_resting_entry_places_the_entry_again_smaller() -> None:
    # Keeping 5 of 10 where 4 filled and 6 rest: no whole order fits the 1 the exit would
    # sell past the 4 filled. It went as asked, sold 5, and was refused REDUCE_ONLY (4 held
    # for certain): the strategy could not trim its entry. The entry of 6 is cancelled and
    # placed again for 5, and the 4 filled are sold.
    from alpha_panda.domain.events import OrderCancelled, OrderSubmitted, derive_id

    runner, oid = entry_resting(4, keep=5)
    exit_, again = runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00,
                                             ts=T0 + 1)) or []
    assert (exit_.side, exit_.quantity, exit_.reduce_only) == (Side.SELL, 4, True)
    assert (again.side, again.quantity, again.order_type, again.limit_price,
            again.product, again.reduce_only) == (
        Side.BUY, 5, OrderType.LIMIT, 99_00, Product.MIS, False)
    assert [o.order_id for _, o in runner.take_cancels()] == [oid]
    assert runner.position("s1", TOKEN) == 5
    # the cancel lands, the new entry rests: 5 meant, none held
    runner.on_order_cancelled_event(OrderCancelled(
        order_id=oid, strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        filled_quantity=4, leaves_quantity=6, reason="strategy", ts=T0 + 1))
    runner.on_order_submitted(OrderSubmitted(
        order_id=derive_id("r", "order"), signal_id="r", strategy_id="s1",
        instrument_token=TOKEN, side=Side.BUY, quantity=5, order_type=OrderType.LIMIT,
        limit_price=99_00, product=Product.MIS, ts=T0 + 1))
    assert runner.position("s1", TOKEN) == 5
    # refused instead, it is not meant any more
    runner, oid = entry_resting(4, keep=5)
    _, again = runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00,
                                         ts=T0 + 1)) or []
    runner.on_signal_rejected(again)
    assert runner.position("s1", TOKEN) == 0


def test_a_partial_exit_of_an_unfilled_entry_trims_it() -> None:
    # Nothing of the limit buy of 10 filled, and the strategy keeps 6: the sell of 4 was
    # refused REDUCE_ONLY and the 10 then filled, long 10 where it meant 6.
    from alpha_panda.backtest.engine import run_backtest

    ticks = day_of([100_00, 100_50, 100_00, 99_00, 98_50, 99_50])
    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:LimitEntryThenExit",
                                  "instruments": [TOKEN], "product": "MIS", "exit_at": None,
                                  "params": {"keep": 6}, "execution": {"costs": False}})
    result = run_backtest(config, ticks)
    assert result.summary["rejections"] == {}
    assert [(f.side, f.quantity, f.price, f.origin) for f in result.fills] == [
        (Side.BUY, 6, 99_00, "signal"), (Side.SELL, 6, 99_50, "squareoff")]
    assert result.summary["orders_cancelled"] == 1
    assert result.summary["signals"] == 2  # the entry, and the entry again for 6 (no sell)


def test_an_entry_the_strategy_cancelled_already_is_not_sold_while_its_cancel_lands() -> None:
    from alpha_panda.domain.events import OrderCancelled

    runner, oid = entry_resting(4, cancel_first=True)
    assert runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00,
                                     ts=T0 + 1)) == []
    assert [o.order_id for _, o in runner.take_cancels()] == [oid]
    # the cancel not confirmed yet: the strategy still means to hold 10 and exits them
    (exit_,) = runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00,
                                         ts=T0 + 2)) or []
    assert exit_.quantity == 4 and runner.take_cancels() == []  # asked once
    runner.on_order_cancelled_event(OrderCancelled(
        order_id=oid, strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        filled_quantity=4, leaves_quantity=6, reason="strategy", ts=T0 + 1))
    assert runner.position("s1", TOKEN) == 0


def test_an_exit_is_refused_where_only_a_resting_entry_makes_it_up() -> None:
    # On the pipeline the runner may not know yet that its entry rests (its submission is
    # read later, many ticks later in a full-speed replay) and send the exit of it whole.
    # The exit passed (the resting buy counted as held) and sold 10: short, if the buy never
    # filled. The risk manager refuses it.
    risk = RiskEngine(RiskConfig(), broker="paper")
    entry = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=10,
                   product=Product.MIS, order_type=OrderType.LIMIT, limit_price=99_00,
                   price_hint=100_00)
    assert isinstance(risk.check("e", entry, T0), SignalValidated)
    decision = risk.check("x", exit_of(10), T0 + 1)
    assert isinstance(decision, SignalRejected) and decision.reason_code == "REDUCE_ONLY"
    assert decision.message == (
        "an exit of 10 is more than the strategy holds on paper for certain: 0 filled or on "
        "its way at market, and 10 more only if its resting orders fill, which they may never "
        "do (cancel them rather than trade against them)")
    # what is filled of it may be sold, and a market entry counts before its fill is read
    from alpha_panda.domain.events import OrderFilled, derive_id

    oid = derive_id("e", "order")
    risk.on_fill(OrderFilled(order_id=oid, fill_id=f"{oid}-f", strategy_id="s1",
                             instrument_token=TOKEN, side=Side.BUY, quantity=4, price=99_00,
                             cumulative_quantity=4, leaves_quantity=6, average_price=99_00,
                             product=Product.MIS, ts=T0 + 1))
    market = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=3,
                    product=Product.MIS, price_hint=100_00)
    assert isinstance(risk.check("m", market, T0 + 1), SignalValidated)
    assert isinstance(risk.check("x2", exit_of(7), T0 + 2), SignalValidated)
    refused = risk.check("x3", exit_of(1), T0 + 2)
    assert isinstance(refused, SignalRejected) and refused.reason_code == "REDUCE_ONLY"


def test_an_entry_whose_cancel_for_an_exit_is_refused_counts_in_the_position_again() -> None:
    # Kite refused the cancel the exit asked (the order in a state it cannot cancel yet):
    # the limit buy still works. The strategy was shown flat for good and never exited it
    # again (nor asked its cancel again), and could buy 10 more beside it: long 20 once
    # both filled. The entry counts again, so it may exit (and the runner cancel) again.
    from alpha_panda.domain.events import OrderCancelled, OrderFilled

    runner, oid = entry_resting(4)
    runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00, ts=T0 + 1))
    assert [o.order_id for _, o in runner.take_cancels()] == [oid]
    assert runner.position("s1", TOKEN) == 0
    runner.on_cancel_refused("s1", oid)
    assert runner.position("s1", TOKEN) == 6  # the 4 sold, the 6 still resting
    # a fill of the rest then ends the entry: held, and no second move
    runner.on_fill(OrderFilled(
        order_id=oid, fill_id=f"{oid}-f1", strategy_id="s1", instrument_token=TOKEN,
        side=Side.BUY, quantity=6, price=99_00, cumulative_quantity=10, leaves_quantity=0,
        average_price=99_00, product=Product.MIS, ts=T0 + 2))
    assert runner.position("s1", TOKEN) == 6
    # or its cancel, asked again later, lands: nothing of it is held
    runner, oid = entry_resting(0)
    runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00, ts=T0 + 1))
    runner.on_cancel_refused("s1", oid)
    assert runner.position("s1", TOKEN) == 10
    runner.on_order_cancelled_event(OrderCancelled(
        order_id=oid, strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        filled_quantity=0, leaves_quantity=10, reason="strategy", ts=T0 + 3))
    assert runner.position("s1", TOKEN) == 0


class ShortThenReverseThenExit(Strategy):
    """A market sell of ``short`` at its first tick; at its second, a limit buy of ``buy`` a
    rupee under the market (a reversal: long ``buy - short`` once it fills); at its third, a
    sell of ``exit`` of what it means to hold (``ctx.position()``: the resting buy counts)."""

    class Params(StrategyParams):
        short: int = 3
        buy: int = 6
        exit: int = 3

    params: Params

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        if self.n == 1:
            return [ctx.sell(self.params.short)]
        if self.n == 2:
            return [ctx.buy(self.params.buy, order_type=OrderType.LIMIT,
                            limit_price=tick.last_price - 100)]
        if self.n == 3:
            return [ctx.sell(self.params.exit)]
        return None


def test_an_exit_of_a_reversal_resting_past_a_short_trims_the_reversal() -> None:
    # Short 3 filled, a limit buy of 6 resting (meant: long 3), then the exit of the 3: all
    # of it is the resting buy's, as the short cannot be sold. The runner took only the
    # resting part beyond what is held the other way for the filled part and sent a sell
    # of 3, refused REDUCE_ONLY (short 3 held); the buy of 6 then filled: long 3, where the
    # strategy meant flat, sold by the square-off. The buy is placed again for 3 instead.
    from alpha_panda.backtest.engine import run_backtest

    ticks = day_of([100_00, 100_00, 100_50, 99_50, 99_00, 99_50])
    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:ShortThenReverseThenExit",
                                  "instruments": [TOKEN], "product": "MIS", "exit_at": None,
                                  "execution": {"costs": False}})
    result = run_backtest(config, ticks)
    assert result.summary["rejections"] == {}
    assert [(f.side, f.quantity, f.price, f.origin) for f in result.fills] == [
        (Side.SELL, 3, 100_00, "signal"), (Side.BUY, 3, 99_00, "signal")]
    assert result.summary["realized_pnl"] == "3.00" and result.summary["open_positions"] == 0


def test_an_exit_smaller_than_a_reversal_never_sells_into_the_short() -> None:
    # Short 2 filled, a limit buy of 10 resting (meant: long 8); the strategy sells 1 of
    # the 8. The sell went out for -2 (refused INVALID, the intent then moved by 2 more
    # than asked: 5, where it meant 7). Nothing is sold: the buy is placed again for 9.
    from alpha_panda.domain.events import OrderFilled, OrderSubmitted, derive_id

    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:ShortThenReverseThenExit",
                                  "instruments": [TOKEN], "product": "MIS", "exit_at": None,
                                  "params": {"short": 2, "buy": 10, "exit": 1}})
    runner = StrategyRunner([config])
    assert runner.process(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0))
    runner.on_fill(OrderFilled(
        order_id="o-s", fill_id="f-s", strategy_id="s1", instrument_token=TOKEN,
        side=Side.SELL, quantity=2, price=100_00, cumulative_quantity=2, leaves_quantity=0,
        average_price=100_00, product=Product.MIS, ts=T0))
    (entry,) = runner.process(MarketTick(instrument_token=TOKEN, last_price=100_00,
                                         ts=T0 + 1)) or []
    oid = derive_id("e", "order")
    runner.on_order_submitted(OrderSubmitted(
        order_id=oid, signal_id="e", strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        quantity=10, order_type=OrderType.LIMIT, limit_price=entry.limit_price,
        product=Product.MIS, ts=T0 + 1))
    assert runner.position("s1", TOKEN) == 8
    sigs = runner.process(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0 + 2))
    assert [(s.side, s.quantity, s.order_type, s.limit_price, s.replaces) for s in sigs or []] == [
        (Side.BUY, 9, OrderType.LIMIT, 99_00, oid)]
    assert [o.order_id for _, o in runner.take_cancels()] == [oid]
    assert runner.position("s1", TOKEN) == 7


def test_a_trim_at_the_exit_time_cancels_the_entry_and_places_nothing_again() -> None:
    # From exit_at the strategy is kept flat. Keeping 6 of a resting limit buy of 10 at its
    # exit time cancelled the 10 and placed a buy of 6 again, after the exit time: not one of
    # the orders the exit cancels, it filled on the dip, and the exit then sold the 6 at once
    # (a delivery round trip after the exit time). The entry is only cancelled there.
    from alpha_panda.backtest.engine import run_backtest

    day = date(2026, 12, 3)
    times = [ist_ns(day, time(13, 59, 59)), ist_ns(day, time(14)), ist_ns(day, time(14, 0, 1)),
             ist_ns(day, time(14, 0, 2))]
    prices = [100_00, 100_50, 99_00, 99_50]
    ticks = TickColumns(ts=np.array(times, dtype=np.int64),
                        instrument_token=np.full(4, TOKEN, dtype=np.int64),
                        last_price=np.array(prices, dtype=np.int64),
                        volume=np.ones(4, dtype=np.int64))
    config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:LimitEntryThenExit",
                                  "instruments": [TOKEN], "product": "CNC", "exit_at": "14:00",
                                  "params": {"keep": 6}, "execution": {"costs": False}})
    result = run_backtest(config, ticks)
    assert [(f.side, f.quantity, f.price) for f in result.fills] == []
    assert (result.summary["signals"], result.summary["orders_cancelled"]) == (1, 1)
    assert result.summary["rejections"] == {} and result.summary["open_positions"] == 0
    # what the strategy is shown: flat once the cancel lands; all 10 if the entry fills first
    from alpha_panda.domain.events import OrderCancelled, OrderFilled, OrderSubmitted, derive_id

    for fills_first in (False, True):
        config = config_from_mapping({"id": "s1", "strategy": f"{__name__}:LimitEntryThenExit",
                                      "instruments": [TOKEN], "product": "MIS",
                                      "exit_at": "10:00:01", "params": {"keep": 6}})
        runner = StrategyRunner([config])
        (entry,) = runner.process(MarketTick(instrument_token=TOKEN, last_price=100_00,
                                             ts=T0)) or []
        oid = derive_id("e", "order")
        runner.on_order_submitted(OrderSubmitted(
            order_id=oid, signal_id="e", strategy_id="s1", instrument_token=TOKEN,
            side=Side.BUY, quantity=10, order_type=OrderType.LIMIT,
            limit_price=entry.limit_price, product=Product.MIS, ts=T0))
        assert runner.process(MarketTick(instrument_token=TOKEN, last_price=101_00,
                                         ts=T0 + 10**9)) == []
        assert [o.order_id for _, o in runner.take_cancels()] == [oid]
        assert runner.position("s1", TOKEN) == 6
        if fills_first:
            runner.on_fill(OrderFilled(
                order_id=oid, fill_id=f"{oid}-f", strategy_id="s1", instrument_token=TOKEN,
                side=Side.BUY, quantity=10, price=99_00, cumulative_quantity=10,
                leaves_quantity=0, average_price=99_00, product=Product.MIS, ts=T0 + 10**9))
        else:
            runner.on_order_cancelled_event(OrderCancelled(
                order_id=oid, strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
                filled_quantity=0, leaves_quantity=10, reason="strategy", ts=T0 + 10**9))
        assert runner.position("s1", TOKEN) == (10 if fills_first else 0)
