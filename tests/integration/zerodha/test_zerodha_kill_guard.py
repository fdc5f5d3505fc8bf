"""While the kill switch is on, the Zerodha engine places nothing but its flatten orders,
and never a signal of a tick by the switch's market time: one the risk manager validated
just before the switch, still on its way when the engine swept Kite's open orders, is
refused, after a restart and after a release too."""

from __future__ import annotations

import asyncio
import time

import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import KiteSession
from alpha_panda.domain.events import (
    CODEC,
    KillSwitchSet,
    OrderRejected,
    Signal,
    SignalValidated,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import Side
from alpha_panda.execution.zerodha.orders import order_id_for, order_tag
from alpha_panda.services.zerodha_engine import build_zerodha_engine
from alpha_panda.services.zerodha_processor import ZerodhaTradingProcessor
from alpha_panda.services.zerodha_topics import CONTROL_TOPIC
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import TopicPartition
from alpha_panda.stream.topics import strategy_instrument_key
from alpha_panda.testing.fake_kite import FakeKite

from .helpers import FAST, INFY, append, count, run_until, signal_envelope, wait_for


def switch(active: bool, ts: int, market_ts: int | None = None, *,
           with_flatten: bool = False) -> Emit:
    env = new_envelope(KillSwitchSet(active=active, flatten=with_flatten, requested_by="test",
                                     market_ts=market_ts),
                       id=derive_id("control:zerodha", "kill_switch", ts), ts=ts,
                       source="kill-switch", key="kill_switch", broker="zerodha")
    return Emit(CONTROL_TOPIC, env)


def flatten(n: int, market_ts: int) -> Emit:
    """A flatten order of the risk manager, at the switch's market time + 1, as it dates them."""
    sid = f"flatten-{n}"
    sig = Signal(strategy_id="s1", instrument_token=INFY, side=Side.SELL, quantity=1,
                 reason="flatten:kill_switch")
    env = new_envelope(SignalValidated(signal=sig, signal_id=sid, flatten=True),
                       id=derive_id(sid, "risk"), ts=market_ts + 1, source="risk", broker="zerodha",
                       key=strategy_instrument_key("s1", INFY))
    return Emit("zerodha.signals.validated", env)


async def rejections(log: MemoryLog) -> list[tuple[str, str]]:
    name = "zerodha.orders.rejected"
    out = []
    for p in await log.end_offsets(name):
        for r in await log.read(TopicPartition(name, p), 0, 1000):
            data = CODEC.decode_as(r.value, OrderRejected).data
            out.append((data.order_id, data.reason_code))
    return out


async def test_nothing_but_the_flatten_is_placed_while_the_switch_is_on(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    market = time.time_ns()  # the latest tick when the switch is set
    await append(log, switch(True, market + 1, market))
    # on their way: one validated before the switch (its tick's), and the switch's flatten
    await append(log, signal_envelope(1, ts=market), flatten(1, market))
    trading = build_zerodha_engine(settings, log, FAST)
    await run_until(trading, lambda: _total(log))
    # the flatten alone reached Kite
    assert [o["transaction_type"] for o in fake.orders.values()] == ["SELL"]
    assert [code for _, code in await rejections(log)] == ["KILL_SWITCH"]

    # a restart resumes after the switch: it still knows it from the log; while it is on,
    # a signal of a later tick (validated before the risk manager read it) is refused too
    await append(log, signal_envelope(2, ts=market - 1), signal_envelope(3, ts=market + 5))
    again = build_zerodha_engine(settings, log, FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))
    await wait_for(lambda: _rejected(log, 3))
    assert len(fake.orders) == 1
    # released: orders go again, but never one of a tick by the switch's market time
    await append(log, switch(False, time.time_ns()))
    await wait_for(lambda: _switch_off(again))
    await append(log, signal_envelope(4, ts=market), signal_envelope(5, ts=market + 10))
    await wait_for(lambda: _submitted(log, 2))
    await wait_for(lambda: _rejected(log, 4))
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(fake.orders) == 2 and again.engine.rejected == 3
    assert [code for _, code in await rejections(log)] == ["KILL_SWITCH"] * 4


@pytest.mark.parametrize(("asked_s_ago", "placed"), [(0, True), (600, False)])
async def test_a_flatten_asked_now_is_placed_though_the_last_tick_is_old(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog,
        asked_s_ago: int, placed: bool) -> None:
    # `kill --flatten` with the system stopped (or the feed quiet) for twenty minutes: its
    # flatten order, dated at the last tick's time, was refused STALE_SIGNAL and the
    # position stayed open at Kite. A flatten asked for long ago (read by an engine that
    # was down since) is still too old to place.
    now = time.time_ns()
    market = now - 1200 * 10**9  # the latest tick on the log
    asked = now - asked_s_ago * 10**9
    await append(log, switch(True, asked, market, with_flatten=True), flatten(1, market))
    trading = build_zerodha_engine(settings, log, FAST)
    await run_until(trading, lambda: _submitted(log, 1) if placed else _rejected(log, 1))
    assert [o["transaction_type"] for o in fake.orders.values()] == (["SELL"] if placed else [])
    assert [code for _, code in await rejections(log)] == ([] if placed else ["STALE_SIGNAL"])


async def _total(log: MemoryLog) -> bool:
    return await count(log, "zerodha.orders.submitted") + await count(
        log, "zerodha.orders.rejected") >= 2


async def _switch_off(trading: ZerodhaTradingProcessor) -> bool:
    return not trading.engine._switch[0]


async def _rejected(log: MemoryLog, n: int) -> bool:
    return await count(log, "zerodha.orders.rejected") >= n


async def _submitted(log: MemoryLog, n: int) -> bool:
    return await count(log, "zerodha.orders.submitted") >= n


def halt(strategy_id: str, ts: int, market_ts: int, *, active: bool = True,
         by_runner: bool = False) -> Emit:
    data = (StrategyHalted(strategy_id=strategy_id, error="ValueError: boom") if by_runner else
            StrategyHalted(strategy_id=strategy_id, error="halted by the trader",
                           requested_by="test", active=active, market_ts=market_ts))
    env = new_envelope(data,
                       id=derive_id("control:zerodha", f"halt:{strategy_id}", ts), ts=ts,
                       source="kill-switch", key="halt", broker="zerodha")
    return Emit(CONTROL_TOPIC, env)


async def test_a_halted_strategys_signal_on_its_way_is_not_placed_and_the_others_are(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    # `halt s1` as its signal of the latest tick, validated just before the risk manager
    # read the halt, is still on its way: the engine swept s1's open orders (none yet) and
    # then placed it, a live order of a halted strategy that nothing cancels. s2 trades on.
    market = time.time_ns()
    await append(log, halt("s1", market + 1, market))
    await append(log, signal_envelope(1, ts=market),
                 signal_envelope(2, ts=market, strategy="s2"))
    trading = build_zerodha_engine(settings, log, FAST)
    await run_until(trading, lambda: _total(log))
    assert [o["tag"] for o in fake.orders.values()] == [order_tag("signal-2")]
    # a restart still knows the halt: a later tick's signal validated before it is refused
    await append(log, signal_envelope(3, ts=market + 5))
    again = build_zerodha_engine(settings, log, FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))
    await wait_for(lambda: _rejected(log, 2))
    # back in service: its new signals go again, never one of a tick by the halt's time
    await append(log, halt("s1", time.time_ns(), market, active=False))
    await wait_for(lambda: _halt_off(again, "s1"))
    await append(log, signal_envelope(4, ts=market), signal_envelope(5, ts=market + 10))
    # a strategy that raised is halted by the runner at its tick, and never put back on
    # the log: fixed and started again, its later signals go
    await append(log, halt("s3", market, market, by_runner=True),
                 signal_envelope(6, ts=market + 10, strategy="s3"))
    await wait_for(lambda: _submitted(log, 3))
    await wait_for(lambda: _rejected(log, 3))
    stop.set()
    await asyncio.wait_for(task, 10)
    assert sorted(o["tag"] for o in fake.orders.values()) == sorted(
        order_tag(s) for s in ("signal-2", "signal-5", "signal-6"))
    assert sorted(await rejections(log)) == [
        (order_id_for(f"signal-{n}"), "STRATEGY_HALTED") for n in (1, 3, 4)]


async def _halt_off(trading: ZerodhaTradingProcessor, strategy_id: str) -> bool:
    return not trading.engine._halts[strategy_id][0]
