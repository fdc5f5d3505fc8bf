"""A restarted risk manager holds the state the live one had: built from its own recorded
decisions and the fills in event time, not by deciding the raw signals again."""

from __future__ import annotations

import asyncio
from datetime import date, time

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import (
    MarketTick,
    OrderFilled,
    Payload,
    Signal,
    SignalRejected,
    new_envelope,
)
from alpha_panda.domain.values import Product, Side
from alpha_panda.execution.orders import order_id_for
from alpha_panda.risk import RiskConfig, RiskEngine, RiskLimits
from alpha_panda.services.risk_manager import (
    RiskHandler,
    build_risk_manager,
    risk_group,
    risk_topics,
)
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import Record, TopicPartition
from alpha_panda.stream.runtime import ProcessorSettings
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY, strategy_instrument_key, topic

TOKEN = 738561
DAY1 = ist_ns(date(2026, 11, 23), time(10, 0))
DAY2 = ist_ns(date(2026, 11, 24), time(10, 0))


def emit(payload: Payload, n: int, ts: int, *, source: str = "t") -> Emit:
    """``payload`` as the risk manager of paper reads it: a tick, a signal, a fill, else a
    control event, of strategy s1 in TOKEN."""
    if isinstance(payload, MarketTick):
        return Emit(MARKET_TICKS, new_envelope(payload, id=f"t{n}", ts=ts, source="t",
                                               key=str(TOKEN)))
    name = ("signals.raw" if isinstance(payload, Signal)
            else "orders.filled" if isinstance(payload, OrderFilled) else "control")
    return Emit(topic("paper", name), new_envelope(
        payload, id=f"e{n}", ts=ts, source=source, key=strategy_instrument_key("s1", TOKEN),
        broker="paper"))


def signal(side: Side, quantity: int = 10) -> Signal:
    return Signal(strategy_id="s1", instrument_token=TOKEN, side=side, quantity=quantity,
                  product=Product.MIS, price_hint=100_00)


def fill(signal_env: str, s: Signal, price: int, ts: int) -> OrderFilled:
    oid = order_id_for(signal_env)
    return OrderFilled(order_id=oid, fill_id=f"{oid}-f", strategy_id="s1", instrument_token=TOKEN,
                       side=s.side, quantity=s.quantity, price=price,
                       cumulative_quantity=s.quantity, leaves_quantity=0, average_price=price,
                       product=s.product, ts=ts)


def engine() -> RiskEngine:
    return RiskEngine(RiskConfig(global_limits=RiskLimits(daily_loss=50_00, max_open_orders=2)),
                      broker="paper")


async def test_a_restart_keeps_the_days_loss_and_the_open_orders_as_they_were() -> None:
    # Day 1: bought 10 at 100, sold at 90 (a loss of 100 rupees, over the day's limit of 50);
    # an order left open. Day 2: a new day, its loss starts at zero.
    buy, sell, rest = signal(Side.BUY), signal(Side.SELL), signal(Side.BUY, 1)
    inputs = [emit(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=DAY1), 1, DAY1),
              emit(buy, 2, DAY1 + 1), emit(fill("e2", buy, 100_00, DAY1 + 2), 3, DAY1 + 2),
              emit(sell, 4, DAY1 + 3), emit(fill("e4", sell, 90_00, DAY1 + 4), 5, DAY1 + 4),
              emit(MarketTick(instrument_token=TOKEN, last_price=90_00, ts=DAY2), 6, DAY2),
              emit(rest, 7, DAY2 + 1)]
    live, r = await live_then_rebuilt(inputs)
    assert (live.day_pnl("s1"), live.open_orders("s1")) == (0, 1)
    assert (r.day_pnl("s1"), r.net_pnl("s1"), r.open_orders("s1")) == (
        0, live.net_pnl("s1"), 1)
    assert r.position("s1", TOKEN) == live.position("s1", TOKEN) == 1
    probe = signal(Side.BUY, 1)
    assert type(r.check("p", probe, DAY2 + 9)) is type(live.check("p", probe, DAY2 + 9))


async def test_a_restart_values_a_carried_position_at_the_last_price_before_the_day() -> None:
    # Day 1: bought 10 delivery at ₹100, marked ₹104 at the close. Day 2 opens at ₹102:
    # ₹20 down on the day, live and after a restart (which reads the fills before the ticks:
    # the day's start was valued at the fill's ₹100, ₹20 up).
    buy = Signal(
        strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=10,
        product=Product.CNC, price_hint=100_00)
    for close in (None, 104_00):
        inputs = [emit(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=DAY1), 1, DAY1),
                  emit(buy, 2, DAY1 + 1), emit(fill("e2", buy, 100_00, DAY1 + 2), 3, DAY1 + 2),
                  emit(MarketTick(instrument_token=TOKEN, last_price=104_00, ts=DAY1 + 9), 4,
                       DAY1 + 9),
                  emit(MarketTick(instrument_token=TOKEN, last_price=102_00, ts=DAY2,
                                  close=close), 5, DAY2)]
        live, rebuilt = await live_then_rebuilt(inputs)
        assert live.day_pnl("s1") == rebuilt.day_pnl("s1") == -20_00
        assert live.day_pnl(None) == rebuilt.day_pnl(None) == -20_00


async def live_then_rebuilt(inputs: list[Emit]) -> tuple[RiskEngine, RiskEngine]:
    """The engine of a risk manager fed ``inputs`` live, and one rebuilt from the log."""
    log = MemoryLog()
    await log.start()
    await log.ensure_topics(REGISTRY.all())
    live = RiskHandler("paper", engine())
    for e in inputs:  # as the live service: each input, then its decision, on the log
        await log.append([to_output(e)])
        await log.append([to_output(o) for o in live.handle(e.envelope, Record(e.topic, 0, 0, None, b""))])
    rebuilt = await rebuild(log, engine())
    await log.close()
    return live.engine, rebuilt.engine


async def rebuild(log: MemoryLog, engine: RiskEngine) -> RiskHandler:
    """A paper risk manager restarted on ``log`` after everything on it was processed (its
    group committed to the end): its state rebuilt from the log, as after a restart."""
    consumer = log.consumer(risk_group("paper"), risk_topics("paper"))
    ends: dict[TopicPartition, int] = {}
    while records := await consumer.poll(1000, 0.05):
        ends.update({r.tp: r.offset + 1 for r in records})
    await consumer.commit([], ends)
    await consumer.close()
    processor, rebuilt = build_risk_manager(log, "paper", engine, ProcessorSettings())
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    while not processor.health().ready:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    return rebuilt


async def test_a_restart_takes_the_rate_slots_the_live_decisions_took() -> None:
    # Kite's 10 orders a second: 5 signals at 10:00:00, 5 at :00.9, 5 at :01.8, each burst
    # within the limit as the window slides. The decisions are on the log by strategy and
    # instrument: the rebuild read the first and last bursts (one partition) before the
    # middle one (another), and then found the middle one's window full, took no slot for
    # it, and let through a signal at :01.85 that the live risk manager refused.
    a_and_c, b = 2953217, 738561  # (their decisions' partitions: 0, 4)
    ms = 1_000_000
    inputs: list[Emit] = []
    n = 0
    for token, at in ((a_and_c, 0), (b, 900 * ms), (a_and_c, 1800 * ms)):
        for k in range(5):
            n += 1
            s = Signal(strategy_id="s1", instrument_token=token, side=Side.BUY, quantity=1,
                       product=Product.MIS, price_hint=100_00)
            inputs.append(Emit(topic("paper", "signals.raw"), new_envelope(
                s, id=f"e{n}", ts=DAY1 + at + k, source="t",
                key=strategy_instrument_key("s1", token), broker="paper")))
    log = MemoryLog()
    await log.start()
    await log.ensure_topics(REGISTRY.all())
    config = RiskConfig(global_limits=RiskLimits(orders_per_second=10))
    live = RiskHandler("paper", RiskEngine(config))
    for e in inputs:
        await log.append([to_output(e)])
        out = live.handle(e.envelope, Record(e.topic, 0, 0, None, b""))
        assert [o.topic for o in out] == ["paper.signals.validated"]
        await log.append([to_output(o) for o in out])
    rebuilt = (await rebuild(log, RiskEngine(config))).engine
    await log.close()
    probe = signal(Side.BUY, 1)
    for risk in (live.engine, rebuilt):
        decision = risk.check("p", probe, DAY1 + 1850 * ms)
        assert isinstance(decision, SignalRejected)
        assert decision.reason_code == "RATE_LIMIT_SECOND"
