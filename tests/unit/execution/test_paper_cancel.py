"""A trader's cancel of one order at the paper exchange: what is left of it is cancelled as
the market stood when it was asked, whether the engine reads the request in time, late, or
(a rebuild) before the order itself; an order that filled first is left alone."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from alpha_panda.domain.events import (
    CancelRequested,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    Payload,
    Signal,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Side
from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.routing import PaperVenue
from alpha_panda.services.paper_engine import PaperEngineHandler
from alpha_panda.stream.log import Record
from tests.unit.execution.test_paper import T0, TOKEN, tick
from tests.unit.execution.test_paper_kill_switch import MS, TICKS, ex, limit, outcome, sig

ASKED = T0 + 10 * MS  # the request's market time: between the dips at 5 and 15 ms


def oid(signal_id: str) -> str:
    return derive_id(signal_id, "order")


def live(signals: list[tuple[int, str, Signal]], cancels: list[tuple[int, str]],
         ticks: list[MarketTick] = TICKS) -> list[Payload]:
    """In time: ticks, signals and cancel requests as they come."""
    x, out = ex(), []
    pending = sorted(signals, key=lambda s: s[0])
    asks = sorted(cancels)
    for t in ticks:
        while pending and pending[0][0] <= t.ts:
            ts, sid, s = pending.pop(0)
            out += x.submit(sid, s, ts)
        while asks and asks[0][0] < t.ts:
            at, sid = asks.pop(0)
            out += x.cancel(oid(sid), at)
        out += x.on_tick(t)
    return out


def rebuilt(signals: list[tuple[int, str, Signal]],
            cancels: list[tuple[int, str]]) -> list[Payload]:
    """A rebuild's order: every tick, then the control topic, then the signals."""
    x, out = ex(), []
    for t in TICKS:
        out += x.on_tick(t)
    for at, sid in cancels:
        out += x.cancel(oid(sid), at)
    for ts, sid, s in signals:
        out += x.submit(sid, s, ts)
    return out


def test_the_order_asked_for_is_cancelled_at_the_request_and_no_other() -> None:
    signals = [(T0, "low", limit(Side.BUY, 990_00)), (T0, "sell", limit(Side.SELL, 1004_00))]
    events = live(signals, [(ASKED, "sell")])
    cancels = [(e.order_id, e.reason, e.ts, e.leaves_quantity) for e in events
               if isinstance(e, OrderCancelled)]
    assert cancels == [(oid("sell"), "user", ASKED, 5)]
    # the sell would have filled at 1005 at 17 ms; the buy at 990 never fills and stays open
    assert not [e for e in events if isinstance(e, OrderFilled)]
    uncancelled = live(signals, [])
    assert [(e.order_id, e.ts) for e in uncancelled if isinstance(e, OrderFilled)] == [
        (oid("sell"), T0 + 17 * MS)]


def test_an_order_filled_before_the_request_is_left_alone() -> None:
    signals = [(T0, "dip", limit(Side.BUY, 995_00))]  # fills on the dip at 5 ms
    events = live(signals, [(ASKED, "dip")])
    assert [(e.order_id, e.ts) for e in events if isinstance(e, OrderFilled)] == [
        (oid("dip"), T0 + 5 * MS)]
    assert not [e for e in events if isinstance(e, OrderCancelled)]


def test_a_rebuild_cancels_as_the_live_run_did() -> None:
    signals = [(T0, "low", limit(Side.BUY, 990_00)), (T0, "sell", limit(Side.SELL, 1004_00)),
               (T0, "dip", limit(Side.BUY, 995_00, qty=3)),
               (T0 + 12 * MS, "after", limit(Side.BUY, 995_00, qty=2))]  # fills at 15 ms
    cancels = [(ASKED, "sell"), (ASKED, "dip"), (T0 + 16 * MS, "after")]
    in_time = live(signals, cancels)
    assert outcome(rebuilt(signals, cancels)) == outcome(in_time)
    assert {(e.order_id, e.reason) for e in in_time if isinstance(e, OrderCancelled)} == {
        (oid("sell"), "user")}
    assert {e.order_id for e in in_time if isinstance(e, OrderFilled)} == {
        oid("dip"), oid("after")}


def test_an_engine_that_ran_ahead_cancels_at_once_and_a_repeat_does_nothing() -> None:
    x = ex()
    x.submit("low", limit(Side.BUY, 990_00), T0)
    for t in TICKS[:15]:  # up to 15 ms, past the request's 10 ms
        x.on_tick(t)
    out = x.cancel(oid("low"), ASKED)
    assert [(type(e).__name__, e.ts, getattr(e, "reason", None)) for e in out] == [
        ("OrderCancelled", T0 + 15 * MS, "user")]
    assert x.cancel(oid("low"), ASKED) == []
    assert x.open_orders() == []


def test_cancelling_a_bracket_leg_leaves_the_other_leg_working() -> None:
    x = ex()
    entry = x.submit("br", sig(Side.BUY, 2, take_profit=1004_00, stop_loss=990_00), T0)
    assert [type(e).__name__ for e in entry].count("OrderFilled") == 1  # and its legs rest
    legs = {o.order_type.value: o.order_id for o in x.open_orders()}
    assert set(legs) == {"LIMIT", "SL-M"}
    assert x.cancel(legs["LIMIT"], T0 + 3 * MS) == []  # as of the next tick
    cancelled = x.on_tick(TICKS[3])
    assert [(type(e).__name__, e.order_id) for e in cancelled] == [
        ("OrderCancelled", legs["LIMIT"])]
    assert [o.order_id for o in x.open_orders()] == [legs["SL-M"]]  # the stop still protects


def test_the_engine_cancels_through_the_venue_and_not_without_a_market_time() -> None:
    slow = ExecutionConfig(costs=False, latency_ms=1)  # a second exchange in the venue
    handler = PaperEngineHandler(PaperVenue({"s1": ExecutionConfig(costs=False), "s2": slow},
                                            seed=7))
    for t in TICKS[:5]:
        handler.exchange.on_tick(t)
    other = Signal(strategy_id="s2", instrument_token=TOKEN, side=Side.BUY, quantity=1,
                   order_type=OrderType.LIMIT, limit_price=990_00)
    handler.exchange.submit("mine", limit(Side.BUY, 990_00), T0 + 5 * MS)
    handler.exchange.submit("theirs", other, T0 + 5 * MS)

    def request(market_ts: int | None, n: int) -> Any:
        env = new_envelope(CancelRequested(order_id=oid("theirs"), market_ts=market_ts),
                           id=f"c{n}", ts=T0, source="test", key="cancel", broker="paper")
        return handler.handle(env, Record("paper.control", 0, n, b"cancel", b""))

    assert request(None, 0) == ()  # no tick on the log when asked: nothing was placed
    assert request(T0 + 6 * MS, 1) == []  # stopped as of 6 ms, cancelled on a later tick
    env = new_envelope(TICKS[6], id="t7", ts=TICKS[6].ts, source="test", key=str(TOKEN))
    (emit,) = handler.handle(env, Record("market.ticks", 0, 0, None, b""))
    assert emit.topic == "paper.orders.cancelled"
    assert (emit.envelope.data.order_id, emit.envelope.data.reason) == (oid("theirs"), "user")
    assert [o.order_id for o in handler.exchange.exchange_for("s1").open_orders()] == [oid("mine")]
    assert handler.exchange.exchange_for("s2").open_orders() == []


def bracket_resting() -> PaperVenue:
    """A venue that fills half of each tick's volume, a bracket buy of 10 resting on it."""
    x = PaperVenue({"s1": ExecutionConfig(costs=False, volume_participation=Decimal("0.5"))},
                   seed=7)
    entry = sig(Side.BUY, 10, order_type=OrderType.LIMIT, limit_price=1000_00,
                take_profit=1010_00, stop_loss=990_00, price_hint=None)
    x.submit("br", entry, T0)
    return x


def test_a_partly_filled_bracket_entry_keeps_its_fill_and_gets_exits_for_it() -> None:
    x = bracket_resting()
    out = x.on_tick(tick(T0 + MS, 1000_00, qty=4))  # half of 4 traded: 2 of 10 filled
    assert [(e.quantity, e.leaves_quantity) for e in out if isinstance(e, OrderFilled)] == [(2, 8)]
    assert x.cancel(oid("br"), T0 + 2 * MS) == []
    out = x.on_tick(tick(T0 + 3 * MS, 1001_00))  # past the request
    assert isinstance(out[0], OrderCancelled) and out[0].leaves_quantity == 8
    legs = sorted((o.order_type.value, o.quantity) for o in x.exchange_for("s1").open_orders())
    assert legs == [("LIMIT", 2), ("SL-M", 2)]  # the filled 2 are protected


def test_a_rebuild_keeps_a_fill_the_live_engine_made_before_it_read_a_late_request() -> None:
    # Live: the engine matched the ticks up to 15 ms (the order filled on the dip at 15 ms)
    # before it read a cancel asked at 10 ms: the fill stands, the cancel finds it filled.
    x = ex()
    for t in TICKS[:6]:
        x.on_tick(t)
    live_out = x.submit("dip", limit(Side.BUY, 995_00), T0 + 6 * MS)  # after the first dip
    for t in TICKS[6:15]:
        live_out += x.on_tick(t)
    live_out += x.cancel(oid("dip"), ASKED)
    for t in TICKS[15:]:
        live_out += x.on_tick(t)
    assert [(e.order_id, e.ts) for e in live_out if isinstance(e, OrderFilled)] == [
        (oid("dip"), T0 + 15 * MS)]
    # Rebuilt from the log (ticks, then the control topic, then the signals), knowing what
    # the engine recorded: the same fill, no cancel.
    y = ex()
    y.recorded(live_out)
    rebuilt_out: list[Payload] = []
    for t in TICKS:
        rebuilt_out += y.on_tick(t)
    rebuilt_out += y.cancel(oid("dip"), ASKED)
    rebuilt_out += y.submit("dip", limit(Side.BUY, 995_00), T0 + 6 * MS)
    y.recorded(())
    assert outcome(rebuilt_out) == outcome(live_out)


def test_a_tick_by_the_request_read_after_it_still_fills_as_in_a_rebuild() -> None:
    # The request's market time is the dip's 5 ms tick, which this engine reads after it.
    at = T0 + 5 * MS
    x, live_out = ex(), []
    live_out += x.submit("dip", limit(Side.BUY, 995_00), T0)
    for t in TICKS[:4]:
        live_out += x.on_tick(t)
    live_out += x.cancel(oid("dip"), at)
    for t in TICKS[4:]:
        live_out += x.on_tick(t)
    assert [(type(e).__name__, e.ts) for e in live_out
            if isinstance(e, OrderFilled | OrderCancelled)] == [("OrderFilled", at)]
    assert outcome(rebuilt([(T0, "dip", limit(Side.BUY, 995_00))], [(at, "dip")])) == outcome(
        live_out)


def test_an_order_placed_just_after_the_requests_market_time_is_cancelled_live_and_rebuilt(
) -> None:
    # (a kill switch's flatten is dated its market time + 1: a cancel asked before the next
    # tick carries the earlier time)
    signals = [(T0 + 3 * MS + 1, "late", limit(Side.BUY, 990_00))]
    cancels = [(T0 + 3 * MS, "late")]
    x, live_out = ex(), []
    for t in TICKS[:3]:
        live_out += x.on_tick(t)
    live_out += x.submit("late", signals[0][2], signals[0][0])
    live_out += x.cancel(oid("late"), cancels[0][0])
    for t in TICKS[3:]:
        live_out += x.on_tick(t)
    assert [(type(e).__name__, e.ts, getattr(e, "reason", None)) for e in live_out
            if isinstance(e, OrderCancelled)] == [("OrderCancelled", T0 + 3 * MS + 1, "user")]
    assert outcome(rebuilt(signals, cancels)) == outcome(live_out)


def test_a_cancel_of_an_order_the_kill_switch_already_stopped_changes_nothing() -> None:
    x, out = ex(), []
    for t in TICKS[:5]:
        out += x.on_tick(t)
    assert x.kill(T0 + 5 * MS) == []  # recorded: orders placed by then are stopped
    out += x.submit("old", limit(Side.BUY, 990_00), T0 + 4 * MS)  # processed after it
    out += x.cancel(oid("old"), T0 + 8 * MS)
    for t in TICKS[5:]:
        out += x.on_tick(t)
    assert [(e.ts, e.reason) for e in out if isinstance(e, OrderCancelled)] == [
        (T0 + 5 * MS, "kill_switch")]


def test_each_fill_of_a_bracket_entry_is_protected_at_once() -> None:
    # (a walkthrough: an entry resting at 18 of 20 had no stop while the price fell through it)
    x = bracket_resting()
    book = x.exchange_for("s1")
    x.on_tick(tick(T0 + MS, 1000_00, qty=4))  # 2 of 10 filled
    assert sorted((o.order_type.value, o.quantity) for o in book.open_orders()
                  if o.parent_order_id) == [("LIMIT", 2), ("SL-M", 2)]
    x.on_tick(tick(T0 + 2 * MS, 1000_00, qty=6))  # 3 more: 5 of 10
    out = x.on_tick(tick(T0 + 3 * MS, 989_00, qty=100))  # through the stop: both stops fire
    exits = [(e.quantity, e.price) for e in out
             if isinstance(e, OrderFilled) and e.side is Side.SELL]
    assert sum(q for q, _ in exits) == 5  # every filled share, out at the stop
    assert {e.reason for e in out if isinstance(e, OrderCancelled)} == {"oco"}  # the targets
