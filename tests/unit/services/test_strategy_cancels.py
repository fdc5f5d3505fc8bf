"""A strategy's cancel (``ctx.cancel``) leaves the runner as a ``CancelRequested`` on the
control topic of each of its brokers, naming that broker's order of the same signal."""

from __future__ import annotations

from alpha_panda.domain.events import (
    CancelRequested,
    Envelope,
    MarketTick,
    OrderSubmitted,
    Payload,
    Signal,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Side
from alpha_panda.execution.zerodha.orders import order_id_for
from alpha_panda.services.strategy_runner import SignalFanout
from alpha_panda.strategy.base import CancelOrder, Context, Strategy
from alpha_panda.strategy.config import config_from_mapping
from alpha_panda.strategy.runner import StrategyRunner
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Record

REC = Record("market.ticks", 0, 0, None, b"")


class CancelAll(Strategy):
    """Cancels everything it has working whenever the price is 0."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        return [ctx.cancel(o) for o in ctx.open_orders()] if tick.last_price == 0 else None


def _runner() -> StrategyRunner:
    runner = StrategyRunner([config_from_mapping({
        "id": "c", "strategy": f"{__name__}:CancelAll", "instruments": [5],
        "brokers": ["paper", "zerodha"]})])
    for oid, parent in (("entry", None), ("leg", "entry")):
        runner.on_order_submitted(OrderSubmitted(
            order_id=oid, signal_id="sig-1", strategy_id="c", instrument_token=5,
            side=Side.BUY, quantity=2, order_type=OrderType.LIMIT, limit_price=100,
            parent_order_id=parent, origin="signal" if parent is None else "bracket"))
    return runner


def _ticks() -> list[Envelope[Payload]]:
    return [new_envelope(MarketTick(instrument_token=5, last_price=p, ts=1000 + n),
                         id=f"tick{n}", ts=1000 + n, source="t", key="5")
            for n, p in enumerate((100, 0, 0))]


def _requests(emits: list[Emit]) -> list[tuple[str, str, str, str, int | None, str]]:
    out = []
    for e in emits:
        assert isinstance(e.envelope.data, CancelRequested)
        r = e.envelope.data
        out.append((e.topic, e.envelope.id, r.order_id, r.requested_by, r.market_ts, r.reason))
    return out


def test_the_cancels_go_to_every_broker_once_with_each_brokers_order_id() -> None:
    ticks = _ticks()
    fanout = SignalFanout(_runner())
    batch = fanout.handle_batch(ticks, [REC] * len(ticks))
    assert [i for i, _ in batch] == [1]  # the second tick asks; the third asks nothing new
    first = derive_id("tick1", "cancel:c", 0)
    second = derive_id("tick1", "cancel:c", 1)
    assert _requests(list(batch[0][1])) == [  # type: ignore[arg-type]
        ("paper.control", first, "entry", "strategy:c", 1001, "strategy"),
        ("zerodha.control", first, order_id_for("sig-1"), "strategy:c", 1001, "strategy"),
        # a bracket leg is the system's, the first broker's own: the other has none of it
        ("paper.control", second, "leg", "strategy:c", 1001, "strategy"),
    ]
    one_by_one = SignalFanout(_runner())
    emits = [e for t in ticks for e in one_by_one.handle(t, REC)]
    assert _requests(emits) == _requests(list(batch[0][1]))  # type: ignore[arg-type]


async def test_the_books_are_rebuilt_at_the_first_assignment_only() -> None:
    # Later assignments of the tick group (a rebalance) replay the ticks again, but the
    # books stay as the feedback consumers keep them: events they processed and have not
    # committed yet would be lost if the books were rebuilt from committed offsets.
    from alpha_panda.adapters.memory_log import MemoryLog
    from alpha_panda.services.strategy_runner import StrategyFeedback
    from alpha_panda.stream.topics import REGISTRY

    log = MemoryLog()
    await log.start()
    await log.ensure_topics(REGISTRY.all())
    runner = _runner()
    feedback = StrategyFeedback("paper", runner)
    fanout = SignalFanout(runner, [feedback])
    feedback.books_ready = fanout.books_ready
    await fanout.before_rebuild(log)
    fanout.after_rebuild()
    await feedback.before_consuming(log)  # does not wait: the books are ready
    ctx = runner._slots["c"][0].ctx
    assert ctx.open_orders() == []  # rebuilt from an empty log
    runner.on_order_submitted(OrderSubmitted(  # live, not committed yet
        order_id="live", signal_id="sig-2", strategy_id="c", instrument_token=5,
        side=Side.BUY, quantity=2, order_type=OrderType.LIMIT, limit_price=100))
    await fanout.before_rebuild(log)  # the tick group assigned again
    fanout.after_rebuild()
    assert [o.order_id for o in ctx.open_orders()] == ["live"] and not runner.replaying
    await log.close()
