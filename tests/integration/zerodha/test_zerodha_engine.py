"""The zerodha trading engine against the fake Kite: exactly once, reconciliation, 429s,
hard isolation, token errors. The official kiteconnect client does every REST call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.zerodha.client import KiteRestClient
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.instruments import InstrumentMaster
from alpha_panda.adapters.zerodha.session import KiteSession
from alpha_panda.adapters.zerodha.ticker import KiteTickerClient
from alpha_panda.domain.errors import (
    AuthenticationError,
    ConfigurationError,
    InvariantViolation,
    RetryableError,
    TransientError,
)
from alpha_panda.domain.events import (
    CODEC,
    Envelope,
    KillSwitchSet,
    OrderRejected,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.costs import CostModel, Segment
from alpha_panda.execution.zerodha import OrderBook, order_tag
from alpha_panda.observability.health import State
from alpha_panda.services.zerodha_engine import ZerodhaEngine, build_zerodha_engine
from alpha_panda.services.zerodha_processor import ZerodhaTradingProcessor
from alpha_panda.services.zerodha_topics import CONTROL_TOPIC, SIGNALS_TOPIC, check_topics
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Log, Record
from alpha_panda.testing.fake_kite import FakeKite

from .helpers import FAST, append, count, order_events, run_until, signal_envelope, wait_for


async def _engine(settings: ZerodhaSettings, session: KiteSession) -> tuple[ZerodhaEngine, KiteRestClient]:
    kite = KiteRestClient(settings, session.access_token)
    master = await InstrumentMaster.load(settings.instruments_dir, kite.instruments)
    return ZerodhaEngine(kite, master, OrderBook()), kite


def _record(emit: Any) -> Record:
    return Record(emit.topic, 0, 0, emit.envelope.key.encode(), CODEC.encode(emit.envelope))


async def _run(trading: ZerodhaTradingProcessor) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(trading.run(stop))


async def test_a_retried_signal_adopts_the_order_it_already_placed(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    emit = signal_envelope(1)
    first, k1 = await _engine(settings, session)
    out1 = await first.ahandle(emit.envelope, _record(emit))
    await k1.close()  # the process dies here: nothing was committed
    second, k2 = await _engine(settings, session)
    out2 = await second.ahandle(emit.envelope, _record(emit))
    await k2.close()
    assert fake.placements == 1
    assert (second.placed, second.adopted) == (0, 1)
    assert [CODEC.encode(e.envelope) for e in out2] == [CODEC.encode(e.envelope) for e in out1]
    [order] = fake.orders.values()
    assert order["tag"] == order_tag("signal-1") and len(order["tag"]) == 20
    assert order["market_protection"] == -1


async def test_an_order_is_placed_once_when_the_engine_crashes_before_committing(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog,
        monkeypatch: pytest.MonkeyPatch) -> None:
    await append(log, signal_envelope(1))
    trading = build_zerodha_engine(settings, log, FAST)
    real = trading.engine.ahandle

    async def crash_after_placing(event: Envelope[Any], record: Record) -> Any:
        await real(event, record)
        raise InvariantViolation("simulated crash between placing and committing")

    monkeypatch.setattr(trading.engine, "ahandle", crash_after_placing)
    stop, task = await _run(trading)
    await asyncio.wait_for(task, 10)
    assert trading.health().state is State.FAILED and "simulated crash" in trading.health().detail
    assert fake.placements == 1 and await count(log, "zerodha.orders.submitted") == 0

    restarted = build_zerodha_engine(settings, log, FAST)
    stop, task = await _run(restarted)
    await wait_for(lambda: _has(log, "submitted", 1))
    await wait_for(lambda: _has(log, "filled", 1))
    stop.set()
    await asyncio.wait_for(task, 10)
    assert fake.placements == 1
    [sub] = await order_events(log, "submitted")
    assert sub.data.broker_order_id == next(iter(fake.orders)) and sub.broker == "zerodha"
    [fill] = await order_events(log, "filled")
    assert (fill.data.quantity, fill.data.price, fill.data.leaves_quantity) == (1, 100_00, 0)
    assert fill.data.charges.total > 0  # Zerodha's rate card applied to the live fill


async def _has(log: Log, suffix: str, n: int) -> bool:
    return await count(log, f"zerodha.orders.{suffix}") >= n


async def test_reconciliation_after_restart_emits_the_fills_made_while_down(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    await append(log, signal_envelope(1, order_type=OrderType.LIMIT, limit_price=99_50, quantity=10))
    trading = build_zerodha_engine(settings, log, FAST)
    await run_until(trading, lambda: _has(log, "submitted", 1))
    [oid] = fake.orders
    fake.fill(oid, 4, 99_50)  # executions while the engine is down
    fake.fill(oid, 6, 99_45)
    # an order of ours Kite has but no event records (placed, then a crash before commit)
    fake._place("regular", {"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "SELL",
                            "quantity": "1", "product": "CNC", "order_type": "LIMIT",
                            "price": "120", "tag": order_tag("signal-lost")})

    restarted = build_zerodha_engine(settings, log, FAST)
    await run_until(restarted, lambda: _has(log, "filled", 2))
    report = restarted.report
    assert report is not None
    assert report.known_orders == 1 and report.corrections == 2
    assert [o.tag for o in report.orphans] == [order_tag("signal-lost")]
    assert report.position_mismatches == []
    fills = [e.data for e in await order_events(log, "filled")]
    assert [(f.quantity, f.price, f.cumulative_quantity, f.leaves_quantity) for f in fills] == [
        (4, 99_50, 4, 6), (6, 99_45, 10, 0)]
    assert fills[1].average_price == (4 * 99_50 + 6 * 99_45 + 5) // 10
    # Kite stamps fills in IST wall-clock time: converted, they are moments ago in UTC
    assert all(abs(f.ts - time.time_ns()) < 30 * 10**9 for f in fills)
    again = build_zerodha_engine(settings, log, FAST)
    again.instruments.update(restarted.instruments)
    assert (await again.sync.reconcile()).corrections == 0  # idempotent
    await again.kite.close()


async def test_rejections_carry_kites_reason(settings: ZerodhaSettings, session: KiteSession,
                                             fake: FakeKite, log: MemoryLog) -> None:
    fake.reject_symbols["INFY"] = "RMS:Margin Exceeds, Required:120.00, Available:0.00"
    await append(log, signal_envelope(1), signal_envelope(2, token=999_999))
    trading = build_zerodha_engine(settings, log, FAST)
    await run_until(trading, lambda: _has(log, "rejected", 2))
    reasons = {e.data.reason_code: e.data.message for e in await order_events(log, "rejected")}
    assert reasons["BROKER_REJECTED"].startswith("RMS:Margin Exceeds")
    assert "999999" in reasons["UNKNOWN_INSTRUMENT"]
    assert all(isinstance(e.data, OrderRejected) for e in await order_events(log, "rejected"))


async def test_an_instrument_missing_from_the_cached_list_is_looked_up_in_a_fresh_one(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    # The engine took today's list early (cached on disk), before Kite listed a new
    # contract: a signal of it downloads the list again, once, and is placed.
    kite = KiteRestClient(settings, session.access_token)
    await InstrumentMaster.load(settings.instruments_dir, kite.instruments)
    await kite.close()
    fake.instruments.append((5_633, "NSE", "NEWCO", "NSE", 0.05, 1))
    downloads = 0
    csv = fake.instruments_csv

    def counted(exchange: str | None) -> str:
        nonlocal downloads
        downloads += 1
        return csv(exchange)

    fake.instruments_csv = counted  # type: ignore[method-assign]
    await append(log, signal_envelope(1, token=5_633))
    trading = build_zerodha_engine(settings, log, FAST)
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 1))
    await append(log, signal_envelope(2, token=999_999), signal_envelope(3, token=999_998))
    await wait_for(lambda: _has(log, "rejected", 2))
    stop.set()
    await asyncio.wait_for(task, 10)
    assert downloads == 1  # the cache at start; one download for 5633; none for 999999 then
    [placed] = [o for o in fake.orders.values() if o["tradingsymbol"] == "NEWCO"]
    assert placed["tag"] == order_tag("signal-1")
    rejected = [e.data for e in await order_events(log, "rejected")]
    assert sorted((r.instrument_token, r.reason_code) for r in rejected) == [
        (999_998, "UNKNOWN_INSTRUMENT"), (999_999, "UNKNOWN_INSTRUMENT")]
    cached = await InstrumentMaster.load(settings.instruments_dir, _no_download)
    assert cached.get(5_633) is not None  # the fresh list replaced the day's cache


async def _no_download() -> list[dict[str, Any]]:
    raise AssertionError("the day's list is cached")


async def test_a_burst_of_50_signals_stays_under_kites_order_rate(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    await append(log, *[signal_envelope(n, quantity=1 + n % 3) for n in range(50)])
    trading = build_zerodha_engine(settings, log, FAST)
    started = time.monotonic()
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 50), timeout=30)
    elapsed = time.monotonic() - started
    stop.set()
    await asyncio.wait_for(task, 10)
    assert fake.placements == 50 and fake.rate_limited == 0
    assert elapsed >= 4.0  # 50 orders at 10/s cannot go faster
    subs = [e.data for e in await order_events(log, "submitted")]
    assert len({s.tag for s in subs}) == 50


async def test_429s_are_retried_and_every_order_is_placed_once(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    # our limiter set far above Kite's real limit, so the fake answers with 429s
    loose = settings.model_copy(update={"orders_per_second": 1000, "requests_per_second": 1000})
    await append(log, *[signal_envelope(n) for n in range(50)])
    trading = build_zerodha_engine(loose, log, FAST)
    await run_until(trading, lambda: _has(log, "submitted", 50), timeout=30)
    assert fake.rate_limited > 0
    assert fake.placements == 50
    assert len({o["tag"] for o in fake.orders.values()}) == 50
    assert await count(log, "zerodha.orders.submitted.dlq") == 0


async def test_no_paper_signal_can_reach_the_live_engine(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    with pytest.raises(ConfigurationError):
        check_topics(["paper.signals.validated"])
    with pytest.raises(ConfigurationError):
        check_topics(["market.ticks"])
    engine, kite = await _engine(settings, session)
    paper_on_live_topic = signal_envelope(7, broker="paper")
    record = Record(SIGNALS_TOPIC, 0, 0, None, CODEC.encode(paper_on_live_topic.envelope))
    with pytest.raises(InvariantViolation, match="paper"):
        await engine.ahandle(paper_on_live_topic.envelope, record)
    live = signal_envelope(8)
    with pytest.raises(ConfigurationError):
        await engine.ahandle(live.envelope, Record("paper.signals.validated", 0, 0, None, b""))
    await kite.close()
    # end to end: a paper signal on the paper topic never becomes a Kite order
    await append(log, signal_envelope(9, broker="paper"), signal_envelope(10))
    trading = build_zerodha_engine(settings, log, FAST)
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 1))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert fake.placements == 1
    assert [o["tag"] for o in fake.orders.values()] == [order_tag("signal-10")]


async def test_live_trading_needs_the_switch_and_a_session(
        settings: ZerodhaSettings, log: MemoryLog) -> None:
    with pytest.raises(ConfigurationError, match="LIVE_ENABLED"):
        build_zerodha_engine(settings.model_copy(update={"live_enabled": False}), log)
    with pytest.raises(AuthenticationError, match="auth login"):
        build_zerodha_engine(settings, log)


async def test_a_token_error_stops_live_trading(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    trading = build_zerodha_engine(settings, log, FAST)
    fake.expire_tokens()
    await append(log, signal_envelope(1))
    _, task = await _run(trading)
    await asyncio.wait_for(task, 10)
    assert fake.placements == 0
    status = trading.health()
    assert status.state is State.FAILED and "AuthenticationError" in status.detail



async def test_a_postback_on_the_feed_socket_brings_the_fill_before_the_next_poll(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    slow_poll = settings.model_copy(update={"poll_interval_s": 30.0})
    await append(log, signal_envelope(1, order_type=OrderType.LIMIT, limit_price=99_00, quantity=5))
    trading = build_zerodha_engine(slow_poll, log, FAST)
    ticker = KiteTickerClient(slow_poll, session.access_token)  # postbacks go to the shared hub
    stop, task = await _run(trading)
    ticker_task = asyncio.create_task(ticker.run(stop))
    await wait_for(lambda: _has(log, "submitted", 1))
    await wait_for(_ticker_connected(fake))
    await asyncio.sleep(0.1)  # the reconcile-time poll is over: only a postback can wake it
    started = time.monotonic()
    fake.fill(next(iter(fake.orders)), 5, 98_95)
    await wait_for(lambda: _has(log, "filled", 1), timeout=5)
    assert time.monotonic() - started < 2.0
    stop.set()
    await asyncio.wait_for(asyncio.gather(task, ticker_task), 10)
    [fill] = await order_events(log, "filled")
    assert (fill.data.price, fill.data.quantity, fill.data.leaves_quantity) == (98_95, 5, 0)


def _ticker_connected(fake: FakeKite) -> Any:
    async def check() -> bool:
        return bool(fake.ws_clients)
    return check


async def _placed_once_after_a_lost_answer(engine: Any, kite: Any, fake: FakeKite,
                                           emit: Any) -> Any:
    """Kite places ``emit``'s order, but our client gives up waiting for its answer; the
    runtime's retry finds it by its tag, not placing it again: its submission."""
    fake.place_delay_s = 0.6
    with pytest.raises(TransientError, match="timed out"):
        await engine.ahandle(emit.envelope, _record(emit))
    fake.place_delay_s = 0.0
    [out] = await engine.ahandle(emit.envelope, _record(emit))  # the runtime's retry
    await kite.close()
    assert fake.placements == 1 and engine.adopted == 1
    return out


async def test_a_placement_whose_answer_is_lost_is_found_by_its_tag_on_retry(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    impatient = settings.model_copy(update={"request_timeout_s": 0.3})
    engine, kite = await _engine(impatient, session)
    out = await _placed_once_after_a_lost_answer(engine, kite, fake, signal_envelope(1))
    assert out.envelope.data.broker_order_id == next(iter(fake.orders))


async def test_a_timed_out_placement_kite_registers_late_is_not_placed_again(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    # Kite slow under load: the request times out before the order is in Kite's book. A
    # retry that looked at once did not find it and placed the order a second time; it
    # must go on looking for a while before it places again.
    impatient = settings.model_copy(update={"request_timeout_s": 0.3})
    kite = KiteRestClient(impatient, session.access_token)
    master = await InstrumentMaster.load(impatient.instruments_dir, kite.instruments)
    engine = ZerodhaEngine(kite, master, OrderBook(), unknown_outcome_s=1.0)
    fake.place_register_delay_s = 0.6
    emit = signal_envelope(1)
    with pytest.raises(TransientError, match="timed out"):
        await engine.ahandle(emit.envelope, _record(emit))
    with pytest.raises(TransientError, match="not found at Kite yet"):
        await engine.ahandle(emit.envelope, _record(emit))  # the runtime's retry, at once
    await asyncio.sleep(0.5)  # Kite has registered it by now
    [out] = await engine.ahandle(emit.envelope, _record(emit))
    fake.place_register_delay_s = 0.0
    await kite.close()
    assert fake.placements == 1 and engine.adopted == 1
    assert out.envelope.data.broker_order_id == next(iter(fake.orders))


async def test_a_timed_out_placement_kite_never_registered_is_placed_after_the_wait(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    from alpha_panda.testing.fake_kite import KiteError

    kite = KiteRestClient(settings, session.access_token)
    master = await InstrumentMaster.load(settings.instruments_dir, kite.instruments)
    now = [time.time_ns()]
    engine = ZerodhaEngine(kite, master, OrderBook(), unknown_outcome_s=10.0,
                           clock=lambda: now[0])
    first = signal_envelope(2, ts=now[0])
    await engine.ahandle(first.envelope, _record(first))  # (the day's orders read)
    fake.fail_next.append(KiteError(503, "NetworkException", "Gateway timed out"))
    emit = signal_envelope(1, ts=now[0])
    with pytest.raises(RetryableError):  # the placement fails: placed or not, unknown
        await engine.ahandle(emit.envelope, _record(emit))
    with pytest.raises(TransientError, match="not found at Kite yet"):
        await engine.ahandle(emit.envelope, _record(emit))
    now[0] += 11 * 10**9  # past the wait: Kite never had it
    [out] = await engine.ahandle(emit.envelope, _record(emit))
    await kite.close()
    assert fake.placements == 2 and engine.placed == 2 and engine.adopted == 0
    assert out.envelope.data.broker_order_id == list(fake.orders)[-1]


async def test_a_placement_answered_by_a_bare_error_page_is_found_by_its_tag_on_retry(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    # A proxy's 502 with no Content-Type: kiteconnect fails reading the answer (a KeyError),
    # not with one of its own errors. Kite placed the order: the engine must treat the
    # outcome as unknown (retryable, the tag looked up first), not as a bug that
    # dead-letters the signal and leaves the order working at Kite with no event of it.
    engine, kite = await _engine(settings, session)
    fake.bare_place_answers = 1
    emit = signal_envelope(1)
    with pytest.raises(RetryableError):
        await engine.ahandle(emit.envelope, _record(emit))
    [out] = await engine.ahandle(emit.envelope, _record(emit))  # the runtime's retry
    await kite.close()
    assert fake.placements == 1 and engine.adopted == 1
    assert out.envelope.data.broker_order_id == next(iter(fake.orders))


async def test_our_tag_behind_kites_own_tags_still_finds_and_cancels_the_order(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    # Kite adds tags of its own (market protection's "mktp") and keeps an order's ``tags`` in
    # no guaranteed order; with ours not first, ``tag`` is not ours. Read from ``tag`` alone,
    # a retried placement did not find its order and placed it again, and the kill switch
    # took the order for the trader's and left it working.
    fake.system_tags = ["mktp", "mktp:2.00"]
    impatient = settings.model_copy(update={"request_timeout_s": 0.3})
    engine, kite = await _engine(impatient, session)
    emit = signal_envelope(1, order_type=OrderType.LIMIT, limit_price=95_00)
    out = await _placed_once_after_a_lost_answer(engine, kite, fake, emit)
    [order] = fake.orders.values()
    assert order["tag"] == "mktp" and out.envelope.data.broker_order_id == order["order_id"]

    # a restart before the submission was committed: the start finds it ours (an orphan)
    # and the redelivered signal adopts it
    await append(log, emit)
    trading = build_zerodha_engine(settings, log, FAST)
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 1))
    assert trading.report is not None
    assert [o.order_id for o in trading.report.orphans] == [order["order_id"]]
    await append(log, _kill_switch())
    await wait_for(lambda: _has(log, "cancelled", 1))
    stop.set()
    await asyncio.wait_for(task, 10)
    assert order["status"] == "CANCELLED" and fake.placements == 1


async def test_an_old_signal_is_not_placed_late(settings: ZerodhaSettings, session: KiteSession,
                                                fake: FakeKite) -> None:
    engine, kite = await _engine(settings, session)
    old = signal_envelope(1, ts=time.time_ns() - 3600 * 10**9,  # an hour-old backlog
                          order_type=OrderType.LIMIT, limit_price=1500_05)
    [out] = await engine.ahandle(old.envelope, _record(old))
    await kite.close()
    assert fake.placements == 0
    rejected = out.envelope.data
    assert isinstance(rejected, OrderRejected) and rejected.reason_code == "STALE_SIGNAL"
    assert (rejected.order_type, rejected.limit_price, rejected.product) == (
        OrderType.LIMIT, 1500_05, Product.CNC)  # what was asked, for the order book


async def test_start_up_waits_for_kite_before_trading(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    from alpha_panda.testing.fake_kite import KiteError

    fake.fail_next.extend([KiteError(503, "NetworkException", "Gateway timed out")] * 2)
    await append(log, signal_envelope(1))
    trading = build_zerodha_engine(settings, log, FAST)
    await run_until(trading, lambda: _has(log, "submitted", 1))
    assert not fake.fail_next and fake.placements == 1
    assert trading.report is not None and trading.report.corrections == 0


def _kill_switch(ts: int | None = None, active: bool = True) -> Emit:
    env = new_envelope(KillSwitchSet(active=active, flatten=active, requested_by="test"),
                       id=derive_id("control:zerodha", "kill_switch", ts or 0),
                       ts=ts or time.time_ns(), source="kill-switch", key="kill_switch",
                       broker="zerodha")
    return Emit(CONTROL_TOPIC, env)


async def test_the_kill_switch_cancels_our_open_orders_at_kite(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    await append(log, signal_envelope(1, order_type=OrderType.LIMIT, limit_price=95_00),
                 signal_envelope(2, order_type=OrderType.LIMIT, limit_price=96_00))
    kite = KiteRestClient(settings, session.access_token)
    manual = await kite.place_order({  # the trader's own order, placed by hand
        "variety": "regular", "exchange": "NSE", "tradingsymbol": "INFY",
        "transaction_type": "BUY", "quantity": 1, "product": "CNC", "order_type": "LIMIT",
        "price": 90.0, "tag": "by-hand"})
    await kite.close()
    trading = build_zerodha_engine(settings, log, FAST)
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 2))
    # an hour old and released since: a new group reading the topic afresh
    old = time.time_ns() - 3600 * 10**9
    await append(log, _kill_switch(old), _kill_switch(old + 1, active=False))
    await asyncio.sleep(0.5)
    assert trading.engine.cancelled == 0 and {o["status"] for o in fake.orders.values()} == {"OPEN"}
    await append(log, _kill_switch())
    await wait_for(lambda: _has(log, "cancelled", 2))
    stop.set()
    await asyncio.wait_for(task, 10)
    assert trading.engine.cancelled == 2
    assert {oid: o["status"] for oid, o in fake.orders.items()} == {
        **{oid: "CANCELLED" for oid, o in fake.orders.items() if oid != manual}, manual: "OPEN"}
    assert {e.data.broker_order_id for e in await order_events(log, "cancelled")} == (
        set(fake.orders) - {manual})


async def test_a_failed_strategys_open_orders_are_cancelled_and_no_others(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    await append(log, signal_envelope(1, order_type=OrderType.LIMIT, limit_price=95_00),
                 signal_envelope(2, order_type=OrderType.LIMIT, limit_price=96_00, strategy="s2"))
    trading = build_zerodha_engine(settings, log, FAST)
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 2))
    halted = new_envelope(StrategyHalted(strategy_id="s1", error="RuntimeError: bug"),
                          id="halt-1", ts=time.time_ns(), source="strategy-runner", key="s1",
                          broker="zerodha")
    await append(log, Emit(CONTROL_TOPIC, halted))
    await wait_for(lambda: _has(log, "cancelled", 1))
    stop.set()
    await asyncio.wait_for(task, 10)
    [cancel] = await order_events(log, "cancelled")
    assert cancel.data.strategy_id == "s1"
    assert sorted(o["status"] for o in fake.orders.values()) == ["CANCELLED", "OPEN"]


async def test_a_same_day_cnc_round_trip_is_charged_intraday_rates_across_a_restart(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    # Zerodha nets a CNC buy and sell of one stock on one day as an intraday trade, as the
    # paper exchange does; the live engine charged the sell delivery's STT on top
    await append(log, signal_envelope(1, quantity=5))
    trading = build_zerodha_engine(settings, log, FAST)
    await run_until(trading, lambda: _has(log, "filled", 1))

    await append(log, signal_envelope(2, quantity=5, side=Side.SELL))
    restarted = build_zerodha_engine(settings, log, FAST)  # it rebuilds the day's CNC book
    await run_until(restarted, lambda: _has(log, "filled", 2))
    buy, sell = (e.data for e in await order_events(log, "filled"))
    assert (buy.side, sell.side, buy.product) == (Side.BUY, Side.SELL, Product.CNC)
    costs = CostModel.load()
    intraday = (costs.fill_charges(Segment.EQUITY_INTRADAY, Side.BUY, 0, 5 * buy.price).total
                + costs.fill_charges(Segment.EQUITY_INTRADAY, Side.SELL, 0, 5 * sell.price).total)
    assert buy.charges.total + sell.charges.total == intraday
    assert sell.charges.stt < 0  # the buy's delivery STT given back


async def test_an_order_on_an_index_is_rejected_as_on_paper_and_never_reaches_kite(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    # NIFTY 50 is in Kite's instrument list (segment INDICES) and its ticks stream, but it
    # cannot be traded: refused here by the paper exchange's rule (NOT_TRADABLE), so both
    # brokers reject it alike, and Kite never sees it (the fake, as Kite, refuses it too)
    await append(log, signal_envelope(1, token=256265))
    trading = build_zerodha_engine(settings, log, FAST)
    await run_until(trading, lambda: _has(log, "rejected", 1))
    (rejected,) = await order_events(log, "rejected")
    assert rejected.data.reason_code == "NOT_TRADABLE"
    assert "256265" in rejected.data.message and "cannot be traded" in rejected.data.message
    assert fake.placements == 0 and not await order_events(log, "filled")


def test_the_fake_kite_refuses_an_order_on_an_index(fake: FakeKite) -> None:
    with pytest.raises(Exception, match="cannot be traded"):
        fake._place("regular", {"exchange": "NSE", "tradingsymbol": "NIFTY 50", "quantity": "1",
                                "transaction_type": "BUY", "product": "CNC",
                                "order_type": "MARKET", "market_protection": "-1"})
    assert fake.placements == 0 and fake.orders == {}
