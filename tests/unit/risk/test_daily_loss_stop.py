"""The daily-loss stop (``daily_loss_flatten``): once a day's loss reaches the limit, the
strategy (or the account) is stopped for the rest of the day, its positions closed, and
back at the next day's first tick; the risk manager writes it as a control event and
acts on it as on the trader's halt, the same after a restart."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.events import (
    Envelope,
    KillSwitchSet,
    MarketTick,
    OrderFilled,
    Payload,
    Signal,
    SignalRejected,
    SignalValidated,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import Product, Side
from alpha_panda.risk import RiskConfig, RiskEngine, RiskLimits
from alpha_panda.services.risk_manager import SOURCE, STOP_BY, RiskHandler
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Record

TOKEN = 738561
DAY1 = ist_ns(date(2026, 11, 23), time(10, 0))
DAY2 = ist_ns(date(2026, 11, 24), time(9, 15))
S = 1_000_000_000
REC = Record("t", 0, 0, None, b"")


def engine(**limits: Any) -> RiskEngine:
    return RiskEngine(RiskConfig(strategies={"s1": RiskLimits(**limits)}), broker="paper")


def bought(risk: RiskEngine, qty: int = 100, price: int = 100_00, ts: int = DAY1) -> None:
    sig = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=qty,
                 product=Product.MIS, price_hint=price)
    assert isinstance(risk.check("b", sig, ts), SignalValidated)
    order_id = derive_id("b", "order")
    risk.on_fill(OrderFilled(order_id=order_id, fill_id=f"{order_id}-f", strategy_id="s1",
                             instrument_token=TOKEN, side=Side.BUY, quantity=qty, price=price,
                             cumulative_quantity=qty, leaves_quantity=0, average_price=price,
                             product=Product.MIS, ts=ts))


def tick(price: int, ts: int) -> MarketTick:
    return MarketTick(instrument_token=TOKEN, last_price=price, ts=ts)


def test_the_stop_is_reached_once_a_day_and_released_the_next() -> None:
    risk = engine(daily_loss=500_00, daily_loss_flatten=True)
    bought(risk)
    risk.on_tick(tick(95_50, DAY1 + S))  # −₹450
    assert risk.stop_changes() == ([], [])
    risk.on_tick(tick(95_00, DAY1 + 2 * S))  # −₹500: reached
    release, reached = risk.stop_changes()
    assert release == [] and [scope for scope, _ in reached] == ["s1"]
    assert reached[0][1] == ("daily loss ₹500.00 reached the limit ₹500.00: stopped for the "
                             "day, positions closed at market")
    risk.on_tick(tick(90_00, DAY1 + 3 * S))
    assert risk.stop_changes() == ([], [])  # once a day
    risk.on_tick(tick(90_00, DAY2))
    assert risk.stop_changes() == (["s1"], [])  # a new day: released
    assert risk.stop_changes() == ([], [])


def test_without_the_flag_daily_loss_is_a_gate_only() -> None:
    risk = engine(daily_loss=500_00)
    bought(risk)
    risk.on_tick(tick(90_00, DAY1 + S))
    assert not risk.has_stops
    assert risk.stop_changes() == ([], [])


def test_the_account_stop_is_the_accounts_loss() -> None:
    risk = RiskEngine(RiskConfig(global_limits=RiskLimits(
        account_daily_loss=800_00, account_daily_loss_flatten=True)), broker="paper")
    bought(risk)
    risk.on_tick(tick(92_00, DAY1 + S))
    assert [scope for scope, _ in risk.stop_changes()[1]] == [None]


def test_after_the_traders_own_halt_or_resume_the_stop_is_theirs() -> None:
    risk = engine(daily_loss=500_00, daily_loss_flatten=True)
    bought(risk)
    risk.on_tick(tick(90_00, DAY1 + S))
    assert risk.stop_changes()[1]
    risk.note_stop("s1", False, DAY1 + 2 * S, by_risk=False)  # the trader resumed it
    risk.on_tick(tick(89_00, DAY1 + 3 * S))
    assert risk.stop_changes() == ([], [])  # not stopped again today
    risk.on_tick(tick(89_00, DAY2))
    assert risk.stop_changes() == ([], [])  # nor released: the trader decides


@pytest.mark.parametrize(("limits", "message"), [
    ({"daily_loss_flatten": "yes"}, "daily_loss_flatten must be true or false"),
    ({"daily_loss_flatten": 1}, "daily_loss_flatten must be true or false"),
])
def test_the_flag_must_be_a_boolean(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RiskLimits.from_mapping(limits)


# ---------------------------------------------------------------- the risk manager

def env(data: Payload, n: int, ts: int, *, source: str = "t",
        broker: str | None = "paper") -> Envelope[Payload]:
    return new_envelope(data, id=f"e{n}", ts=ts, source=source, key="k", broker=broker)


def outputs(handler: RiskHandler, *events: Envelope[Payload]) -> list[Emit]:
    out: list[Emit] = []
    for e in events:
        out += handler.handle(e, REC)
    return out


def test_the_risk_manager_writes_the_stop_then_flattens_as_for_the_traders_halt() -> None:
    handler = RiskHandler("paper", engine(daily_loss=500_00, daily_loss_flatten=True))
    bought(handler.engine)
    assert outputs(handler, env(tick(96_00, DAY1 + S), 1, DAY1 + S)) == []
    crossing = env(tick(94_00, DAY1 + 2 * S), 2, DAY1 + 2 * S)
    (stop,) = outputs(handler, crossing)
    assert stop.topic == "paper.control"
    halted = stop.envelope.data
    assert isinstance(halted, StrategyHalted)
    assert (halted.strategy_id, halted.active, halted.flatten, halted.requested_by,
            halted.market_ts) == ("s1", True, True, STOP_BY, DAY1 + 2 * S)
    assert halted.error.startswith("daily loss ₹600.00 reached the limit ₹500.00")
    assert halted.until == ist_ns(date(2026, 11, 24), time(0, 0))
    assert stop.envelope.id == derive_id("e2", "daily_loss:stop:s1")
    # at once: the strategy's next signal is refused, whenever its halt is read back
    late = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=1,
                  product=Product.MIS, price_hint=94_00)
    (refused,) = outputs(handler, env(late, 3, DAY1 + 3 * S, source="strategy-runner"))
    assert isinstance(refused.envelope.data, SignalRejected)
    assert refused.envelope.data.reason_code == "STRATEGY_HALTED"
    # read back, as the trader's halt with flatten: a market sell of the position
    (flatten,) = outputs(handler, stop.envelope)
    sig = flatten.envelope.data
    assert flatten.topic == "paper.signals.raw" and flatten.envelope.source == SOURCE
    assert isinstance(sig, Signal)
    assert (sig.side, sig.quantity, sig.reason, flatten.envelope.ts) == (
        Side.SELL, 100, "flatten:daily_loss", DAY1 + 2 * S + 1)
    (passed,) = outputs(handler, flatten.envelope)
    assert isinstance(passed.envelope.data, SignalValidated) and passed.envelope.data.flatten
    # the next day's first tick puts it back (the runner too: the halt said until when)
    assert outputs(handler, env(tick(94_00, DAY2), 4, DAY2)) == []
    (again,) = outputs(handler, env(late, 5, DAY2 + S, source="strategy-runner"))
    assert isinstance(again.envelope.data, SignalValidated)


def test_a_fill_read_before_its_tick_is_marked_at_that_tick() -> None:
    # With latency an order fills at a later tick than its signal's; the risk manager may
    # read the fill before that tick: marked at the tick before (100), the buy of 100 at 110
    # would look ₹1,000 down and stop the strategy, which the backtest (the tick first)
    # stops only when the price falls to 104.
    handler = RiskHandler("paper", engine(daily_loss=500_00, daily_loss_flatten=True))
    sig = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=100,
                 product=Product.MIS, price_hint=100_00)
    assert outputs(handler, env(tick(100_00, DAY1), 1, DAY1)) == []
    assert isinstance(handler.engine.check("b", sig, DAY1), SignalValidated)
    order_id = derive_id("b", "order")
    fill = OrderFilled(order_id=order_id, fill_id=f"{order_id}-f", strategy_id="s1",
                       instrument_token=TOKEN, side=Side.BUY, quantity=100, price=110_00,
                       cumulative_quantity=100, leaves_quantity=0, average_price=110_00,
                       product=Product.MIS, ts=DAY1 + S)
    assert outputs(handler, env(fill, 2, DAY1 + S), env(tick(110_00, DAY1 + S), 3, DAY1 + S),
                   env(tick(106_00, DAY1 + 2 * S), 4, DAY1 + 2 * S)) == []
    (stop,) = outputs(handler, env(tick(104_00, DAY1 + 3 * S), 5, DAY1 + 3 * S))
    assert isinstance(stop.envelope.data, StrategyHalted)
    assert stop.envelope.data.error.startswith("daily loss ₹600.00")


def test_in_batches_the_stop_comes_at_the_same_tick() -> None:
    events = [env(tick(100_00 - k * 1_00, DAY1 + k * S), k, DAY1 + k * S) for k in range(1, 9)]
    one = RiskHandler("paper", engine(daily_loss=500_00, daily_loss_flatten=True))
    batched = RiskHandler("paper", engine(daily_loss=500_00, daily_loss_flatten=True),
                          every_tick=True)
    bought(one.engine)
    bought(batched.engine)
    single = [(n, e.envelope.id) for n, ev in enumerate(events) for e in one.handle(ev, REC)]
    batch = [(n, e.envelope.id) for n, emits in batched.handle_batch(events, [REC] * 8)
             for e in emits]
    assert single == batch == [(4, derive_id("e5", "daily_loss:stop:s1"))]  # −₹500 at ₹95


def test_the_account_stop_is_the_kill_switch_with_flatten() -> None:
    risk = RiskEngine(RiskConfig(global_limits=RiskLimits(
        account_daily_loss=500_00, account_daily_loss_flatten=True)), broker="paper")
    handler = RiskHandler("paper", risk)
    bought(risk)
    (stop,) = outputs(handler, env(tick(94_00, DAY1 + S), 1, DAY1 + S))
    switch = stop.envelope.data
    assert isinstance(switch, KillSwitchSet)
    assert (switch.active, switch.flatten, switch.requested_by) == (True, True, STOP_BY)
    assert risk.kill_switch
    (flatten,) = outputs(handler, stop.envelope)
    assert isinstance(flatten.envelope.data, Signal)
    assert flatten.envelope.data.reason == "flatten:daily_loss"
    # released at the next day's first tick, on the control topic (the dashboard shows it)
    (release,) = outputs(handler, env(tick(94_00, DAY2), 2, DAY2))
    assert isinstance(release.envelope.data, KillSwitchSet)
    assert (release.envelope.data.active, release.envelope.data.requested_by) == (False, STOP_BY)
    assert not risk.kill_switch


def test_the_runner_puts_a_stopped_strategy_back_at_the_first_tick_of_the_next_day() -> None:
    from alpha_panda.strategy.config import config_from_mapping
    from alpha_panda.strategy.runner import StrategyRunner

    config = config_from_mapping({"id": "s1", "strategy": "sma_cross", "instruments": [TOKEN],
                                  "params": {"fast": 2, "slow": 3, "quantity": 1}})
    runner = StrategyRunner([config])
    runner.process(tick(100_00, DAY1))
    until = ist_ns(date(2026, 11, 24), time(0, 0))
    assert runner.halt("s1", True, "daily loss", until=until)
    assert runner.statuses()[0].state == "HALTED"
    assert runner.statuses()[0].error == "daily loss"
    runner.process(tick(100_00, until - 1))
    assert runner.statuses()[0].state == "HALTED"
    runner.process(tick(100_00, DAY2))
    assert (runner.statuses()[0].state, runner.statuses()[0].error) == ("ACTIVE", None)
    # a halt read after it lapsed (a restart's catch-up) changes nothing
    assert runner.halt("s1", True, "daily loss", until=until)
    assert runner.statuses()[0].state == "ACTIVE"


def test_one_brokers_stop_does_not_take_a_two_broker_strategy_out_of_service() -> None:
    # its paper risk manager holds the halt on paper; on zerodha it trades on, or its live
    # positions would have no one to close them
    from alpha_panda.services.strategy_runner import StrategyFeedback
    from alpha_panda.strategy.config import config_from_mapping
    from alpha_panda.strategy.runner import StrategyRunner

    def config(sid: str, brokers: list[str]) -> Any:
        return config_from_mapping({"id": sid, "strategy": "sma_cross", "instruments": [TOKEN],
                                    "brokers": brokers,
                                    "params": {"fast": 2, "slow": 3, "quantity": 1}})

    runner = StrategyRunner([config("solo", ["paper"]), config("both", ["paper", "zerodha"])])
    feedback = StrategyFeedback("paper", runner)
    for sid in ("solo", "both"):
        stop = StrategyHalted(strategy_id=sid, error="daily loss", requested_by=STOP_BY,
                              flatten=True, market_ts=DAY1, until=DAY2)
        feedback.handle(env(stop, 1, DAY1), REC)
    states = {s.id: (s.state, s.error) for s in runner.statuses()}
    assert states == {"solo": ("HALTED", "daily loss"), "both": (
        "ACTIVE", "daily loss (on paper; it trades on at its other brokers)")}
    runner.process(tick(100_00, DAY2))  # the next day: the note goes
    assert {s.id: s.error for s in runner.statuses()}["both"] is None
    # the trader's halt takes it out everywhere, as before
    feedback.handle(env(StrategyHalted(strategy_id="both", requested_by="api"), 2, DAY1), REC)
    assert {s.id: s.state for s in runner.statuses()}["both"] == "HALTED"


def test_a_refused_flatten_leaves_the_strategys_intended_position_alone() -> None:
    # the stop's flatten refused (the strategy's own exit closed the position first): the
    # runner must not "undo" a sell it never made, or the strategy thinks it is long
    from alpha_panda.services.strategy_runner import StrategyFeedback
    from alpha_panda.strategy.config import config_from_mapping
    from alpha_panda.strategy.runner import StrategyRunner

    runner = StrategyRunner([config_from_mapping({
        "id": "s1", "strategy": "sma_cross", "instruments": [TOKEN],
        "params": {"fast": 2, "slow": 3, "quantity": 1}})])
    feedback = StrategyFeedback("paper", runner)
    flatten = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.SELL, quantity=20,
                     product=Product.MIS, reason="flatten:daily_loss")
    for own in (True, False):
        refused = SignalRejected(signal=flatten, signal_id=f"f{own}", reason_code="STRATEGY_HALTED",
                                 message="halted", flatten=own)
        feedback.handle(env(refused, 1, DAY1), REC)
        position = runner._books["s1"].positions.get(TOKEN, 0)
        assert position == (0 if own else 20)  # a strategy's own refused sell: moved back


def test_a_fill_read_after_the_ticks_that_lost_the_money_stops_at_the_latest_tick() -> None:
    # full speed: the risk manager read the ticks (₹100 → ₹94) before the engine's fill
    handler = RiskHandler("paper", engine(daily_loss=500_00, daily_loss_flatten=True))
    risk = handler.engine
    sig = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=100,
                 product=Product.MIS, price_hint=100_00)
    assert isinstance(risk.check("b", sig, DAY1), SignalValidated)
    assert outputs(handler, env(tick(100_00, DAY1), 1, DAY1),
                   env(tick(94_00, DAY1 + S), 2, DAY1 + S)) == []
    order_id = derive_id("b", "order")
    fill = OrderFilled(order_id=order_id, fill_id=f"{order_id}-f", strategy_id="s1",
                       instrument_token=TOKEN, side=Side.BUY, quantity=100, price=100_00,
                       cumulative_quantity=100, leaves_quantity=0, average_price=100_00,
                       product=Product.MIS, ts=DAY1)
    (stop,) = outputs(handler, env(fill, 3, DAY1))
    halted = stop.envelope.data
    assert isinstance(halted, StrategyHalted) and halted.market_ts == DAY1 + S
    assert stop.envelope.id == derive_id("e2", "daily_loss:stop:s1")  # as if at that tick


def test_a_fill_of_the_next_day_read_before_its_first_tick_stops_that_day_and_flattens() -> None:
    # 100 carried overnight; day 2 gaps down and a stop-loss leg sells half at ₹90 (−₹500),
    # its fill read before the day's first tick: that tick (the fill's) marks it, and the
    # stop is day 2's, and it flattens
    handler = RiskHandler("paper", engine(daily_loss=500_00, daily_loss_flatten=True))
    bought(handler.engine)
    assert outputs(handler, env(tick(100_00, DAY1 + S), 1, DAY1 + S)) == []
    leg = OrderFilled(order_id="sl", fill_id="sl-f", strategy_id="s1", instrument_token=TOKEN,
                      side=Side.SELL, quantity=50, price=90_00, cumulative_quantity=50,
                      leaves_quantity=0, average_price=90_00, product=Product.MIS, ts=DAY2,
                      origin="bracket")
    assert outputs(handler, env(leg, 2, DAY2)) == []
    (stop,) = outputs(handler, env(tick(90_00, DAY2), 3, DAY2))
    halted = stop.envelope.data
    assert isinstance(halted, StrategyHalted) and halted.market_ts == DAY2
    (flatten,) = outputs(handler, stop.envelope)  # read back: the 50 still held are sold
    assert isinstance(flatten.envelope.data, Signal)
    assert (flatten.envelope.data.side, flatten.envelope.data.quantity) == (Side.SELL, 50)


def test_a_fill_of_the_next_day_is_not_flattened_once_the_account_stop_is_released() -> None:
    # The engine releases the day's account stop (the kill switch) at the next day's first
    # tick and writes the release on the control topic; until this service reads it back,
    # it took the switch's flatten as standing: a new day's entry filled in between was
    # sold at market at once, as a flatten of the stopped day.
    risk = RiskEngine(RiskConfig(global_limits=RiskLimits(
        account_daily_loss=500_00, account_daily_loss_flatten=True)), broker="paper")
    handler = RiskHandler("paper", risk)
    bought(risk)
    (stop,) = outputs(handler, env(tick(94_00, DAY1 + S), 1, DAY1 + S))
    (flatten,) = outputs(handler, stop.envelope)
    assert flatten.envelope.data.reason == "flatten:daily_loss"
    (release,) = outputs(handler, env(tick(94_00, DAY2), 2, DAY2))
    assert not risk.kill_switch
    entry = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=5,
                   product=Product.MIS, price_hint=94_00)
    assert isinstance(risk.check("n", entry, DAY2 + S), SignalValidated)
    order_id = derive_id("n", "order")
    filled = OrderFilled(order_id=order_id, fill_id=f"{order_id}-f", strategy_id="s1",
                         instrument_token=TOKEN, side=Side.BUY, quantity=5, price=94_00,
                         cumulative_quantity=5, leaves_quantity=0, average_price=94_00,
                         product=Product.MIS, ts=DAY2 + 2 * S)
    assert outputs(handler, env(filled, 3, DAY2 + 2 * S)) == []
    # the release read back: the same
    assert outputs(handler, release.envelope) == []
    # a strategy's stop alike: released by the engine at the new day's first event (here
    # its signal, ahead of the day's first tick here), and its fill is its own
    handler = RiskHandler("paper", engine(daily_loss=500_00, daily_loss_flatten=True))
    bought(handler.engine)
    (stop,) = outputs(handler, env(tick(94_00, DAY1 + S), 4, DAY1 + S))
    (flatten,) = outputs(handler, stop.envelope)
    assert isinstance(handler.engine.check("n2", entry, DAY2 + S), SignalValidated)
    assert not handler.engine.is_halted("s1")
    order_id = derive_id("n2", "order")
    filled = OrderFilled(order_id=order_id, fill_id=f"{order_id}-f", strategy_id="s1",
                         instrument_token=TOKEN, side=Side.BUY, quantity=5, price=94_00,
                         cumulative_quantity=5, leaves_quantity=0, average_price=94_00,
                         product=Product.MIS, ts=DAY2 + 2 * S)
    assert [e.topic for e in outputs(handler, env(filled, 5, DAY2 + 2 * S))] == []
