"""A paper engine restarted after it read a control event late rebuilds what it did live.

Live, the engine reads ``market.ticks``, ``paper.control`` and ``paper.signals.validated``
as they come: here it matched ticks past a cancel request's market time (the order filled
on one of them) before it read the request, so the fill stands. A rebuild replays the
ticks, then the whole control topic, then the signals: by the request's time alone it
would cancel the order before that fill. It follows what the engine recorded instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.domain.events import (
    CancelRequested,
    KillSwitchSet,
    MarketTick,
    Payload,
    Signal,
    SignalValidated,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.orders import OrderStatus
from alpha_panda.execution.routing import PaperVenue
from alpha_panda.services.paper_engine import PaperEngineHandler, build_paper_engine
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import Record, TopicPartition
from alpha_panda.stream.runtime import ProcessorSettings
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY, strategy_instrument_key, topic
from tests.unit.execution.test_paper import T0, TOKEN

MS = 1_000_000
GROUP = "paper.trading-engine"
TOPICS = [MARKET_TICKS, topic("paper", "control"), topic("paper", "signals.validated")]


def tick_emit(k: int, price: int) -> Emit:
    data = MarketTick(instrument_token=TOKEN, last_price=price, ts=T0 + k * MS)
    env = new_envelope(data, id=f"tick-{k}", ts=data.ts, source="test", key=str(TOKEN))
    return Emit(MARKET_TICKS, env)


def order_emit(n: str, limit_price: int, at: int) -> Emit:
    sig = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=5,
                 order_type=OrderType.LIMIT, limit_price=limit_price, product=Product.MIS,
                 price_hint=1000_00)
    env = new_envelope(SignalValidated(signal=sig, signal_id=n), id=derive_id(n, "risk"), ts=at,
                       source="risk", broker="paper", key=strategy_instrument_key("s1", TOKEN))
    return Emit(topic("paper", "signals.validated"), env)


def control_emit(payload: Payload, n: int) -> Emit:
    env = new_envelope(payload, id=f"control-{n}", ts=T0, source="test", key="control",
                       broker="paper")
    return Emit(topic("paper", "control"), env)


async def live(log: SqliteLog, inputs: list[Emit]) -> PaperEngineHandler:
    """The engine as it ran: each input appended and handled in this order, its outputs
    appended, and the group's offsets committed past everything."""
    handler = PaperEngineHandler(PaperVenue({}, seed=7))
    for emit in inputs:
        await log.append([to_output(emit)])
        record = Record(emit.topic, 0, 0, emit.envelope.key.encode(), b"")
        outputs = handler.handle(emit.envelope, record)
        if outputs:
            await log.append([to_output(e) for e in outputs])
    consumer = log.consumer(GROUP, TOPICS)
    ends: dict[TopicPartition, int] = {}
    while records := await consumer.poll(1000, 0.05):
        for r in records:
            ends[TopicPartition(r.topic, r.partition)] = r.offset + 1
    await consumer.commit([], ends)
    await consumer.close()
    return handler


async def rebuilt(log: SqliteLog) -> PaperEngineHandler:
    processor, handler = build_paper_engine(log, {}, ProcessorSettings(poll_timeout=0.01))
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    deadline = asyncio.get_running_loop().time() + 10
    while not processor.health().ready:
        assert asyncio.get_running_loop().time() < deadline, "the engine never caught up"
        await asyncio.sleep(0.02)
    stop.set()
    await task
    return handler


def status(handler: PaperEngineHandler, signal_id: str) -> Any:
    order = handler.exchange.exchange_for("s1").order(derive_id(signal_id, "order"))
    assert order is not None
    return order.status, order.filled


async def test_a_late_control_event_is_rebuilt_as_the_engine_applied_it(tmp_path: Path) -> None:
    prices = {5: 995_00, 15: 995_00, 17: 1005_00}
    ticks = [tick_emit(k, prices.get(k, 1000_00)) for k in range(1, 21)]
    dip, low = order_emit("dip", 995_00, T0 + 6 * MS), order_emit("low", 990_00, T0 + 6 * MS)
    ten = T0 + 10 * MS  # the market's time of both requests: ticks to 15 ms came first
    cancel = control_emit(CancelRequested(order_id=derive_id("dip", "order"), market_ts=ten), 1)
    kill = control_emit(KillSwitchSet(active=True, market_ts=ten), 2)
    log = SqliteLog(tmp_path / "log.db")
    await log.start()
    await log.ensure_topics(REGISTRY.all())
    try:
        before = await live(log, [*ticks[:6], dip, low, *ticks[6:15], cancel, kill, *ticks[15:]])
        # live: the dip buy filled at 15 ms (the cancel found it filled), the low buy was
        # cancelled by the switch at 15 ms, the latest tick the engine had matched
        assert status(before, "dip") == (OrderStatus.FILLED, 5)
        assert status(before, "low") == (OrderStatus.CANCELLED, 0)
        after = await rebuilt(log)
        assert status(after, "dip") == (OrderStatus.FILLED, 5)
        assert status(after, "low") == (OrderStatus.CANCELLED, 0)
        low_order = after.exchange.exchange_for("s1").order(derive_id("low", "order"))
        assert low_order is not None and (low_order.killed_ns, low_order.killed_by) == (
            T0 + 15 * MS, "kill_switch")
        assert after.exchange.exchange_for("s1").open_orders() == []
    finally:
        await log.close()


async def test_a_rebuild_places_each_order_among_the_ticks_it_met_live(tmp_path: Path) -> None:
    # A restart replays every tick, then the signals: placed after 5,000 ticks of their
    # instrument, more than the 4,096 the exchange keeps, a limit buy filled live was
    # rejected STALE_ORDER, and a bracket's stop-loss that had sold the position at tick 20
    # rested again (with its target), to sell it a second time on the next dip.
    ticks = [tick_emit(k, 985_00 if 20 <= k < 25 else 1000_00) for k in range(1, 5001)]
    entry = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=10,
                   product=Product.MIS, price_hint=1000_00, take_profit=1050_00,
                   stop_loss=990_00)
    env = new_envelope(SignalValidated(signal=entry, signal_id="e"), id=derive_id("e", "risk"),
                       ts=T0 + 10 * MS, source="risk", broker="paper",
                       key=strategy_instrument_key("s1", TOKEN))
    bracket = Emit(topic("paper", "signals.validated"), env)
    limit = order_emit("dip", 990_00, T0 + 12 * MS)  # fills at the dip, at 990
    log = SqliteLog(tmp_path / "log.db")
    await log.start()
    await log.ensure_topics(REGISTRY.all())
    try:
        before = await live(log, [*ticks[:10], bracket, *ticks[10:12], limit, *ticks[12:]])
        assert status(before, "e") == (OrderStatus.FILLED, 10)
        assert status(before, "dip") == (OrderStatus.FILLED, 5)
        assert before.exchange.exchange_for("s1").open_orders() == []
        after = await rebuilt(log)
        assert status(after, "e") == (OrderStatus.FILLED, 10)
        assert status(after, "dip") == (OrderStatus.FILLED, 5)
        exchange = after.exchange.exchange_for("s1")
        stop = exchange.order(derive_id(derive_id("e", "order"), "stop_loss", 0))
        assert stop is not None and stop.status is OrderStatus.FILLED
        assert exchange.open_orders() == []
    finally:
        await log.close()
