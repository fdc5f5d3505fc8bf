"""A trader's cancel of one order, and the reasons of the cancellations the engine asks
for, against the fake Kite through the official kiteconnect client."""

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
from alpha_panda.domain.events import (
    CODEC,
    CancelRefused,
    CancelRequested,
    KillSwitchSet,
    OrderCancelled,
    OrderSubmitted,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Side
from alpha_panda.execution.zerodha import OrderBook, order_id_for, order_tag
from alpha_panda.observability.health import State
from alpha_panda.services.zerodha_engine import ZerodhaEngine, build_zerodha_engine
from alpha_panda.services.zerodha_processor import ZerodhaTradingProcessor
from alpha_panda.services.zerodha_topics import CONTROL_TOPIC
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Log, Record, read_topic
from alpha_panda.testing.fake_kite import FakeKite

from .helpers import FAST, append, count, order_events, signal_envelope, wait_for


def _cancel(order_id: str, ts: int | None = None, reason: str = "user") -> Emit:
    """As ``PipelineControl.cancel_order`` (or, ``reason`` ``strategy``, the strategy
    runner) appends it."""
    now = ts or time.time_ns()
    request = CancelRequested(order_id=order_id, requested_by="test", market_ts=now,
                              reason=reason)  # type: ignore[arg-type]
    env = new_envelope(request,
                       id=derive_id("control:zerodha", f"cancel:{order_id}", now), ts=now,
                       source="kill-switch", key="cancel", broker="zerodha")
    return Emit(CONTROL_TOPIC, env)


def _control(payload: Any, key: str) -> Emit:
    env = new_envelope(payload, id=derive_id("control:zerodha", key, time.time_ns()),
                       ts=time.time_ns(), source="kill-switch", key=key, broker="zerodha")
    return Emit(CONTROL_TOPIC, env)


def _record(emit: Emit) -> Record:
    return Record(emit.topic, 0, 0, emit.envelope.key.encode(), CODEC.encode(emit.envelope))


async def _has(log: Log, suffix: str, n: int) -> bool:
    return await count(log, f"zerodha.orders.{suffix}") >= n


async def _run(trading: ZerodhaTradingProcessor) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(trading.run(stop))


def _cancels(fake: FakeKite) -> int:
    return sum(1 for method, _ in fake.requests if method == "DELETE")


def _limit(n: int, price: int, strategy: str = "s1") -> Emit:
    return signal_envelope(n, order_type=OrderType.LIMIT, limit_price=price, quantity=5,
                           strategy=strategy)


@pytest.mark.parametrize("reason", ["user", "strategy"])
async def test_a_cancel_request_cancels_that_order_at_kite_and_is_recorded_as_the_askers(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog,
        reason: str) -> None:
    await append(log, _limit(1, 95_00), _limit(2, 96_00))
    trading = build_zerodha_engine(settings, log, FAST)
    assert trading.engine._book is trading.sync.book  # the reason the engine sets is seen
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 2))
    subs = {e.data.signal_id: e.data for e in await order_events(log, "submitted")}
    target, other = subs["signal-1"], subs["signal-2"]
    assert fake.orders[target.broker_order_id]["status"] == "OPEN"  # resting below the market

    await append(log, _cancel(target.order_id, reason=reason))
    await wait_for(lambda: _has(log, "cancelled", 1))
    await asyncio.sleep(0.3)  # a second cancellation would have come by now
    stop.set()
    await asyncio.wait_for(task, 10)
    assert fake.orders[target.broker_order_id]["status"] == "CANCELLED"
    assert fake.orders[other.broker_order_id]["status"] == "OPEN"
    [cancelled] = await order_events(log, "cancelled")
    assert cancelled.broker == "zerodha"
    c = cancelled.data
    assert (c.order_id, c.broker_order_id, c.reason) == (
        target.order_id, target.broker_order_id, reason)
    assert (c.filled_quantity, c.leaves_quantity, c.strategy_id) == (0, 5, "s1")
    assert trading.engine.cancelled == 1 and _cancels(fake) == 1


async def test_a_cancel_request_that_cannot_apply_changes_nothing_and_the_engine_goes_on(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    kite = KiteRestClient(settings, session.access_token)
    manual = await kite.place_order({  # the trader's own order, placed by hand at Kite
        "variety": "regular", "exchange": "NSE", "tradingsymbol": "INFY",
        "transaction_type": "BUY", "quantity": 1, "product": "CNC", "order_type": "LIMIT",
        "price": 90.0, "tag": "by-hand"})
    await kite.close()
    await append(log, _limit(1, 95_00))
    trading = build_zerodha_engine(settings, log, FAST)
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 1))
    ours = order_id_for("signal-1")
    an_hour_ago = time.time_ns() - 3600 * 10**9  # a new group reading the topic afresh
    await append(log, _cancel("no-such-order"), _cancel(manual), _cancel(ours, an_hour_ago),
                 _limit(2, 96_00))
    await wait_for(lambda: _has(log, "submitted", 2))  # consumed past the requests
    await asyncio.sleep(0.3)
    assert trading.health().state is State.RUNNING
    stop.set()
    await asyncio.wait_for(task, 10)
    assert {o["status"] for o in fake.orders.values()} == {"OPEN"} and len(fake.orders) == 3
    assert _cancels(fake) == 0 and trading.engine.cancelled == 0
    assert await count(log, "zerodha.orders.cancelled") == 0
    assert trading.stats.dead_lettered == 0
    # the trader is told why of the two current requests; the hour-old one is only logged
    refusals = [CODEC.decode(r.value).data for r in await read_topic(log, CONTROL_TOPIC)]
    refusals = [r for r in refusals if isinstance(r, CancelRefused)]
    assert [(r.order_id, r.message) for r in refusals] == [
        (o, "no order of this system has that id on Zerodha (placed by hand, or never placed)")
        for o in ("no-such-order", manual)]


async def _engine(settings: ZerodhaSettings, session: KiteSession
                  ) -> tuple[ZerodhaEngine, KiteRestClient]:
    kite = KiteRestClient(settings, session.access_token)
    master = await InstrumentMaster.load(settings.instruments_dir, kite.instruments)
    return ZerodhaEngine(kite, master, OrderBook()), kite


async def test_a_redelivered_cancel_request_asks_kite_once(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    engine, kite = await _engine(settings, session)
    placed = _limit(1, 95_00)
    await engine.ahandle(placed.envelope, _record(placed))
    request = _cancel(order_id_for("signal-1"))
    for _ in range(2):  # the second: a crash before the offset was committed; Kite shows
        # the order cancelled, as asked: not a refusal
        assert await engine.ahandle(request.envelope, _record(request)) == []
    await kite.close()
    [order] = fake.orders.values()
    assert order["status"] == "CANCELLED" and _cancels(fake) == 1 and engine.cancelled == 1


async def test_an_order_filled_before_the_cancel_reaches_kite_is_left_filled(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite,
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine, kite = await _engine(settings, session)
    placed = _limit(1, 95_00)
    await engine.ahandle(placed.envelope, _record(placed))
    [broker_id] = fake.orders
    read = kite.order_history

    async def fills_right_after(order_id: str) -> list[dict[str, Any]]:
        rows = await read(order_id)  # Kite shows it OPEN ...
        fake.fill(broker_id, 5, 95_00)  # ... and it fills before the cancel arrives
        return rows

    monkeypatch.setattr(kite, "order_history", fills_right_after)
    request = _cancel(order_id_for("signal-1"), reason="strategy")
    [refused] = await engine.ahandle(request.envelope, _record(request))
    await kite.close()
    assert refused.topic == CONTROL_TOPIC and isinstance(refused.envelope.data, CancelRefused)
    r = refused.envelope.data
    assert (r.order_id, r.reason, r.requested_by) == (order_id_for("signal-1"), "strategy", "test")
    assert r.message.startswith("Kite refused the cancel: ")
    assert refused.envelope.causation_id == request.envelope.id
    assert fake.orders[broker_id]["status"] == "COMPLETE" and _cancels(fake) == 1
    assert engine.cancelled == 0
    order = engine._book.by_order_id(order_id_for("signal-1"))
    assert order is not None and order.cancel_reason is None  # Kite refused: not ours to claim


async def test_cancellations_by_a_halt_and_by_the_kill_switch_say_so(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    await append(log, _limit(1, 95_00), _limit(2, 96_00, strategy="s2"), _limit(3, 97_00))
    trading = build_zerodha_engine(settings, log, FAST)
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 3))
    [first] = [oid for oid, o in fake.orders.items() if o["tag"] == order_tag("signal-1")]
    fake.cancel(first)  # cancelled at Kite, not by us
    await wait_for(lambda: _has(log, "cancelled", 1))
    await append(log, _control(StrategyHalted(strategy_id="s2", error="RuntimeError: bug"), "s2"))
    await wait_for(lambda: _has(log, "cancelled", 2))
    await append(log, _control(KillSwitchSet(active=True, requested_by="test"), "kill_switch"))
    await wait_for(lambda: _has(log, "cancelled", 3))
    stop.set()
    await asyncio.wait_for(task, 10)
    reasons = {e.data.order_id: e.data.reason for e in await order_events(log, "cancelled")}
    assert reasons == {order_id_for("signal-1"): "broker",
                       order_id_for("signal-2"): "strategy_halted",
                       order_id_for("signal-3"): "kill_switch"}


async def test_a_strategys_cancel_that_comes_before_its_order_keeps_it_from_kite(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    # Shadow trading: the strategy saw its paper order and cancelled it while this
    # engine's copy of the signal was still on its way (its partition paused by a retry).
    engine, kite = await _engine(settings, session)
    early = _cancel(order_id_for("signal-1"), reason="strategy")
    assert await engine.ahandle(early.envelope, _record(early)) == []  # not refused: kept
    placed = _limit(1, 95_00)
    [emit] = await engine.ahandle(placed.envelope, _record(placed))
    other = _limit(2, 96_00)
    [submitted] = await engine.ahandle(other.envelope, _record(other))
    await kite.close()
    assert isinstance(emit.envelope.data, OrderCancelled) and emit.topic.endswith(".cancelled")
    c = emit.envelope.data
    assert (c.order_id, c.reason, c.filled_quantity, c.leaves_quantity) == (
        order_id_for("signal-1"), "strategy", 0, 5)
    assert len(fake.orders) == 1 and _cancels(fake) == 0  # only the other order reached Kite
    assert isinstance(submitted.envelope.data, OrderSubmitted)
    # a user's cancel of an order this engine never placed is refused at once, as before
    stray = _cancel("no-such-order")
    [refused] = await engine.ahandle(stray.envelope, _record(stray))
    assert isinstance(refused.envelope.data, CancelRefused)


async def test_a_strategys_early_cancel_survives_kite_failing_the_order_book_lookup(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    # The cancel came first and is kept; the signal's look-up of the day's orders (the
    # engine's first, or the first after an unsure placement) meets a Kite hiccup and the
    # signal is retried. The retry must still find the cancel: it used to be dropped with
    # the failed attempt, and the retry placed the order the strategy had cancelled.
    from alpha_panda.domain.errors import RetryableError
    from alpha_panda.testing.fake_kite import KiteError

    engine, kite = await _engine(settings, session)
    early = _cancel(order_id_for("signal-1"), reason="strategy")
    assert await engine.ahandle(early.envelope, _record(early)) == []
    placed = _limit(1, 95_00)
    fake.fail_next.append(KiteError(503, "NetworkException", "Gateway timed out"))
    with pytest.raises(RetryableError):
        await engine.ahandle(placed.envelope, _record(placed))
    [emit] = await engine.ahandle(placed.envelope, _record(placed))  # the runtime's retry
    await kite.close()
    assert isinstance(emit.envelope.data, OrderCancelled)
    assert (emit.envelope.data.reason, emit.envelope.data.leaves_quantity) == ("strategy", 5)
    assert fake.placements == 0 and fake.orders == {}


async def test_a_strategys_early_cancel_of_an_order_found_at_kite_survives_a_kite_error(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    # The order reached Kite before a restart, no event of it was committed; the strategy's
    # cancel came before the redelivered signal, which adopts the order and asks Kite to
    # cancel it. Kite fails that (503): the retry must still cancel it, not only adopt it
    # and leave it working at Kite.
    from alpha_panda.domain.errors import RetryableError
    from alpha_panda.testing.fake_kite import KiteError

    before, kite = await _engine(settings, session)
    placed = _limit(1, 95_00)
    await before.ahandle(placed.envelope, _record(placed))  # then the crash
    await kite.close()
    engine, kite = await _engine(settings, session)  # restarted
    other = _limit(2, 96_00)
    await engine.ahandle(other.envelope, _record(other))  # (reads the day's orders)
    early = _cancel(order_id_for("signal-1"), reason="strategy")
    assert await engine.ahandle(early.envelope, _record(early)) == []
    fake.fail_next.append(KiteError(503, "NetworkException", "Gateway timed out"))
    with pytest.raises(RetryableError):
        await engine.ahandle(placed.envelope, _record(placed))
    [submitted] = await engine.ahandle(placed.envelope, _record(placed))  # the retry
    await kite.close()
    assert isinstance(submitted.envelope.data, OrderSubmitted)
    first = submitted.envelope.data.broker_order_id
    assert fake.placements == 2 and fake.orders[first]["status"] == "CANCELLED"


async def test_an_entry_trimmed_that_fills_first_at_kite_keeps_its_replacement_from_kite(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    # The strategy (first broker zerodha) rests a limit buy of 10 and keeps 6 of it: the
    # runner cancels the 10 and signals a buy of 6. Kite fills the 10 before the cancel
    # reaches it: the cancel is refused, and the buy of 6, placed as well, made it 16 where
    # the strategy meant 6. The runner reads the refusal and cancels the buy of 6, which
    # this engine (its signal still on its way through the risk manager) never places.
    from alpha_panda.domain.events import OrderFilled, Signal, SignalValidated
    from tests.unit.services.test_trimmed_entry_race import Run, cancels

    from .helpers import INFY

    engine, kite = await _engine(settings, session)
    run = Run(broker="zerodha", token=INFY, product="CNC", t0=time.time_ns())

    async def engine_reads(emit: Emit) -> list[Emit]:
        env = emit.envelope
        if isinstance(env.data, Signal):  # as the risk manager passes it
            env = new_envelope(SignalValidated(signal=env.data, signal_id=env.id),
                               id=derive_id(env.id, "risk"), ts=env.ts, source="risk",
                               broker="zerodha", key=env.key)
            emit = Emit("zerodha.signals.validated", env)
        out = list(await engine.ahandle(env, _record(emit)))
        for e in out:  # back to the runner, as its feedback consumer reads them
            run.emitted += run.feedback.handle(e.envelope, _record(e))
        return out

    (entry,) = run.tick(0)
    [submitted] = await engine_reads(entry)
    assert isinstance(submitted.envelope.data, OrderSubmitted)
    [broker_id] = fake.orders
    out = run.tick(1)
    [again] = [e for e in out if isinstance(e.envelope.data, Signal)]
    [cancel] = [e for e in out if isinstance(e.envelope.data, CancelRequested)]
    assert again.envelope.data.quantity == 6 and again.envelope.data.replaces == (
        order_id_for(entry.envelope.id))
    fake.fill(broker_id, 10, 99_00)  # at Kite, before the cancel
    [refused] = await engine_reads(cancel)
    assert isinstance(refused.envelope.data, CancelRefused)
    [late] = [e for e in run.emitted if isinstance(e.envelope.data, CancelRequested)
              and e.envelope.data.order_id == order_id_for(again.envelope.id)]
    assert await engine_reads(late) == []  # kept for its order, which comes next
    [gone] = await engine_reads(again)
    assert isinstance(gone.envelope.data, OrderCancelled)
    assert len(fake.orders) == 1 and fake.orders[broker_id]["status"] == "COMPLETE"
    # the sync reports the fill of the 10: the strategy is shown the 10 it holds
    run.feedback.handle(new_envelope(OrderFilled(
        order_id=order_id_for(entry.envelope.id), fill_id="f1", strategy_id="s1",
        instrument_token=INFY, side=Side.BUY, quantity=10, price=99_00,
        cumulative_quantity=10, leaves_quantity=0, average_price=99_00),
        id="fill", ts=time.time_ns(), source="zerodha-engine", key="s1"), _record(late))
    assert run.position() == (10, 10) and cancels(run.emitted)[-1] == late.envelope.data.order_id
    await kite.close()


async def test_an_order_in_a_pending_status_not_in_kites_highlighted_list_is_still_cancelled(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    # Kite's docs highlight "some" interim statuses; Zerodha: every order not COMPLETE,
    # CANCELLED or REJECTED is pending and takes a cancel. One in a status the engine did not
    # list was left working at Kite by a trader's cancel (no refusal either) and by the
    # kill switch.
    await append(log, _limit(1, 95_00), _limit(2, 96_00))
    trading = build_zerodha_engine(settings, log, FAST)
    stop, task = await _run(trading)
    await wait_for(lambda: _has(log, "submitted", 2))
    subs = {e.data.signal_id: e.data for e in await order_events(log, "submitted")}
    first, second = subs["signal-1"].broker_order_id, subs["signal-2"].broker_order_id
    for oid in (first, second):
        fake.orders[oid]["status"] = "MODIFIED"  # (a status outside the engine's list)
    await append(log, _cancel(order_id_for("signal-1")))
    await wait_for(lambda: _has(log, "cancelled", 1))
    await append(log, _control(KillSwitchSet(active=True, requested_by="test"), "kill_switch"))
    await wait_for(lambda: _has(log, "cancelled", 2))
    stop.set()
    await asyncio.wait_for(task, 10)
    assert fake.orders[first]["status"] == fake.orders[second]["status"] == "CANCELLED"
    reasons = {e.data.broker_order_id: e.data.reason for e in await order_events(log, "cancelled")}
    assert reasons == {first: "user", second: "kill_switch"}
