"""A Kite outage longer than a processor's retries: the live engine waits for Kite instead
of dead-lettering, so a kill switch still cancels what is open and a signal still ends in
an order event. And a kill switch set while the engine was down, read long after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import KiteSession
from alpha_panda.domain.events import KillSwitchSet, StrategyHalted, new_envelope
from alpha_panda.domain.values import OrderType, Side
from alpha_panda.services.zerodha_engine import build_zerodha_engine
from alpha_panda.services.zerodha_topics import CONTROL_TOPIC
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.runtime import ProcessorSettings
from alpha_panda.testing.fake_kite import FakeKite, KiteError

from .helpers import append, count, order_events, signal_envelope, wait_for

# the runtime's default attempts (10 for BrokerUnavailable), backoff capped low: an outage
# of a second or two outlasts them, as one of some 15 s does with the default cap of 5 s
QUICK = ProcessorSettings(poll_timeout=0.01, backoff_base=0.02, backoff_max=0.1,
                          lag_interval=0.1)


def _outage(fake: FakeKite) -> None:
    fake.fail_next.extend(KiteError(503, "NetworkException", "Kite is down") for _ in range(60))


async def test_a_kill_switch_set_in_an_outage_cancels_the_open_orders_once_kite_is_back(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    offset = [0]  # the engine's clock: the outage outlasts the age of events it acts on

    trading = build_zerodha_engine(settings, log, QUICK,
                                   clock=lambda: time.time_ns() + offset[0])
    stop = asyncio.Event()
    task = asyncio.create_task(trading.run(stop))
    await append(log, signal_envelope(1, order_type=OrderType.LIMIT, limit_price=90_00))
    await wait_for(lambda: _submitted(log))
    [resting] = fake.orders.values()
    assert resting["status"] == "OPEN"
    _outage(fake)
    switch = new_envelope(KillSwitchSet(active=True, requested_by="cli"), id="kill-1",
                          ts=time.time_ns(), source="cli", broker="zerodha", key="kill_switch")
    retried = trading.stats.retried
    await append(log, Emit(CONTROL_TOPIC, switch))
    await wait_for(lambda: _more(trading.stats.retried, retried))  # its sweep failed
    offset[0] = 600 * 10**9  # and Kite answers ten minutes on
    await wait_for(lambda: _drained(fake), timeout=20)
    # it was dead-lettered after ten attempts (or, retried past five minutes, skipped as
    # too old), and the order went on working at Kite
    await wait_for(lambda: _cancelled(log), timeout=20)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert resting["status"] == "CANCELLED"
    [cancelled] = [e.data for e in await order_events(log, "cancelled")]
    assert cancelled.reason == "kill_switch"
    assert await count(log, "zerodha.control.dlq") == 0


async def test_a_signal_in_an_outage_is_placed_once_kite_is_back(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    trading = build_zerodha_engine(settings, log, QUICK)
    stop = asyncio.Event()
    task = asyncio.create_task(trading.run(stop))
    await wait_for(lambda: _reconciled(trading.report is not None))
    _outage(fake)
    await append(log, signal_envelope(1))
    # it was dead-lettered: no order, no order event, the strategy's intent never settled
    await wait_for(lambda: _submitted(log), timeout=20)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert fake.placements == 1
    assert await count(log, "zerodha.signals.validated.dlq") == 0


async def _reconciled(done: bool) -> bool:
    return done


async def _more(now: int, before: int) -> bool:
    return now > before


async def _drained(fake: FakeKite) -> bool:
    return not fake.fail_next


async def _submitted(log: MemoryLog) -> bool:
    return await count(log, "zerodha.orders.submitted") == 1


async def _cancelled(log: MemoryLog) -> bool:
    return await count(log, "zerodha.orders.cancelled") == 1


def _control(data: KillSwitchSet | StrategyHalted, id: str, ts: int) -> Emit:
    key = "kill_switch" if isinstance(data, KillSwitchSet) else data.strategy_id
    return Emit(CONTROL_TOPIC, new_envelope(data, id=id, ts=ts, source="cli", broker="zerodha",
                                            key=key))


async def _resting_order_then_stopped(settings: ZerodhaSettings, log: MemoryLog,
                                      fake: FakeKite) -> dict[str, object]:
    """A limit buy of s1 resting at Kite, and the engine that placed it stopped."""
    trading = build_zerodha_engine(settings, log, QUICK)
    stop = asyncio.Event()
    task = asyncio.create_task(trading.run(stop))
    await append(log, signal_envelope(1, order_type=OrderType.LIMIT, limit_price=90_00))
    await wait_for(lambda: _submitted(log))
    stop.set()
    await asyncio.wait_for(task, 10)
    [resting] = fake.orders.values()
    assert resting["status"] == "OPEN"
    return resting


async def _run_later(settings: ZerodhaSettings, log: MemoryLog, minutes: int,
                     done: Callable[[Any], Awaitable[bool]]) -> None:
    """The engine started again ``minutes`` on (its clock), until ``done(engine)``."""
    trading = build_zerodha_engine(settings, log, QUICK,
                                   clock=lambda: time.time_ns() + minutes * 60 * 10**9)
    stop = asyncio.Event()
    task = asyncio.create_task(trading.run(stop))
    try:
        await wait_for(lambda: done(trading), timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("scope", ["kill_switch", "strategy_halted"])
async def test_a_kill_switch_set_while_the_engine_was_down_cancels_the_open_orders(
        scope: str, settings: ZerodhaSettings, session: KiteSession, fake: FakeKite,
        log: MemoryLog) -> None:
    # `alpha-panda kill` (or halt) while the system was down: read ten minutes later, the
    # switch was older than the engine acts on and was only logged; the order went on
    # working at Kite under a standing kill switch
    resting = await _resting_order_then_stopped(settings, log, fake)
    data = (KillSwitchSet(active=True, requested_by="cli") if scope == "kill_switch"
            else StrategyHalted(strategy_id="s1", requested_by="cli"))
    await append(log, _control(data, "stop-1", time.time_ns()))
    await _run_later(settings, log, 10, lambda _: _cancelled(log))
    assert resting["status"] == "CANCELLED"
    [cancelled] = [e.data for e in await order_events(log, "cancelled")]
    assert cancelled.reason == scope


async def test_a_kill_switch_released_since_is_not_acted_on_late(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    resting = await _resting_order_then_stopped(settings, log, fake)
    now = time.time_ns()
    await append(log, _control(KillSwitchSet(active=True, requested_by="cli"), "kill-1", now),
                 _control(KillSwitchSet(active=False, requested_by="cli"), "kill-2", now + 1),
                 _control(StrategyHalted(strategy_id="s1", requested_by="cli"), "halt-1", now + 2),
                 _control(StrategyHalted(strategy_id="s1", requested_by="cli", active=False),
                          "halt-2", now + 3))
    await _nothing_cancelled_once_read(settings, log, resting, 4)


async def test_a_daily_loss_halt_read_late_is_not_taken_as_standing(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    # a daily-loss stop of a strategy lapses by itself at the next day's start (`until`),
    # with no record of its end: read at a restart, it must not sweep the day's orders
    resting = await _resting_order_then_stopped(settings, log, fake)
    now = time.time_ns()
    stop = StrategyHalted(strategy_id="s1", requested_by="risk:daily_loss", flatten=True,
                          until=now - 60 * 10**9)
    await append(log, _control(stop, "halt-1", now - 3600 * 10**9))
    await _nothing_cancelled_once_read(settings, log, resting, 1)


async def _nothing_cancelled_once_read(settings: ZerodhaSettings, log: MemoryLog,
                                       resting: dict[str, object], records: int) -> None:
    """The engine, ten minutes on, reads ``records`` and leaves the resting order working."""
    async def read(engine: Any) -> bool:
        return bool(engine.stats.processed >= records)

    await _run_later(settings, log, 10, read)
    assert resting["status"] == "OPEN"
    assert await order_events(log, "cancelled") == []


async def test_a_kill_switch_read_late_leaves_its_flatten_orders_working(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite,
        log: MemoryLog) -> None:
    # `kill --flatten` while the engine was down: read on its return, the switch's own
    # flatten order (another topic) went to Kite first, and the sweep cancelled that
    # exit with the rest: the position it was to close stayed open
    resting = await _resting_order_then_stopped(settings, log, fake)
    now = time.time_ns()
    # (dated just after the switch's market time, as the risk manager dates them)
    exit_ = signal_envelope(2, order_type=OrderType.LIMIT, limit_price=95_00,
                            side=Side.SELL, ts=now + 1)
    data = msgspec.structs.replace(exit_.envelope.data, flatten=True)
    await append(log, Emit(exit_.topic, msgspec.structs.replace(exit_.envelope, data=data)),
                 _control(KillSwitchSet(active=True, flatten=True, requested_by="cli",
                                        market_ts=now), "kill-1", now))

    async def both_done(engine: Any) -> bool:
        return bool(engine.stats.processed >= 2) and await _cancelled(log)

    await _run_later(settings, log, 2, both_done)
    assert resting["status"] == "CANCELLED"
    [exit_order] = [o for o in fake.orders.values() if o["transaction_type"] == "SELL"]
    assert exit_order["status"] == "OPEN"


async def test_a_kill_switch_released_since_leaves_the_orders_placed_after_it(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite,
        log: MemoryLog) -> None:
    # Set and released a second later while the engine was down; back a minute on, the
    # engine placed a strategy's order of a tick after the release (another topic) before
    # it read the switch, whose sweep (recent) then cancelled that order too: the
    # strategy's trading after the release was undone at Kite
    resting = await _resting_order_then_stopped(settings, log, fake)
    now = time.time_ns()
    await append(log, signal_envelope(2, order_type=OrderType.LIMIT, limit_price=91_00,
                                      ts=now + 2 * 10**9),
                 _control(KillSwitchSet(active=True, requested_by="cli", market_ts=now),
                          "kill-1", now),
                 _control(KillSwitchSet(active=False, requested_by="cli",
                                        market_ts=now + 10**9), "kill-2", now + 10**9))

    async def all_done(engine: Any) -> bool:
        return bool(engine.stats.processed >= 3) and await _cancelled(log)

    await _run_later(settings, log, 1, all_done)
    assert resting["status"] == "CANCELLED"  # placed before the switch: it was swept
    [later] = [o for o in fake.orders.values() if o is not resting]
    assert later["status"] == "OPEN"
