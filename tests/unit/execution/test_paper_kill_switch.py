"""The kill switch at the paper exchange: every order that arrived by the switch's market
time is cancelled and fills on no later tick, whether the engine processes the switch in
time, late, or (a rebuild) before the orders."""

from __future__ import annotations

from typing import Any

from alpha_panda.domain.events import (
    KillSwitchSet,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderSubmitted,
    Payload,
    Signal,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.orders import order_id_for
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from alpha_panda.execution.routing import PaperVenue
from alpha_panda.services.paper_engine import PaperEngineHandler
from alpha_panda.stream.log import Record
from tests.unit.execution.test_paper import T0, TOKEN, tick

MS = 1_000_000
KILL = T0 + 10 * MS


def ex() -> PaperExchange:
    return PaperExchange(ExecutionConfig(costs=False), seed=7)


def sig(side: Side, qty: int, **kw: Any) -> Signal:
    kw.setdefault("price_hint", 1000_00)
    kw.setdefault("product", Product.MIS)  # (a CNC sell would need holdings)
    return Signal(strategy_id="s1", instrument_token=TOKEN, side=side, quantity=qty, **kw)


def limit(side: Side, price: int, qty: int = 5) -> Signal:
    return sig(side, qty, order_type=OrderType.LIMIT, limit_price=price)


# ticks at T0 + 1..20 ms; the price dips to 995 at 5 ms and 15 ms, rises to 1005 at 17 ms
TICKS = [tick(T0 + k * MS, {5: 995_00, 15: 995_00, 17: 1005_00}.get(k, 1000_00))
         for k in range(1, 21)]


def outcome(events: list[Payload]) -> set[tuple[Any, ...]]:
    return {(type(e).__name__, e.order_id, e.ts, getattr(e, "quantity", None),
             getattr(e, "reason", None)) for e in events
            if isinstance(e, OrderFilled | OrderCancelled)}


def live(signals: list[tuple[int, str, Signal]], kill_at: int | None = KILL,
         ticks: list[MarketTick] = TICKS) -> list[Payload]:
    """In time: ticks, signals and the switch as they come."""
    x, out = ex(), []
    pending = sorted(signals, key=lambda s: s[0])
    killed = kill_at is None
    for t in ticks:
        while pending and pending[0][0] <= t.ts:
            ts, sid, s = pending.pop(0)
            out += x.submit(sid, s, ts)
        if not killed and kill_at is not None and kill_at < t.ts:
            out += x.kill(kill_at)
            killed = True
        out += x.on_tick(t)
    return out


def rebuilt(signals: list[tuple[int, str, Signal]], kill_at: int = KILL) -> list[Payload]:
    """A rebuild's order: every tick, then the control topic, then the signals."""
    x, out = ex(), []
    for t in TICKS:
        out += x.on_tick(t)
    out += x.kill(kill_at)
    for ts, sid, s in signals:
        out += x.submit(sid, s, ts)
    return out


def test_resting_orders_are_cancelled_at_the_switch_and_never_fill_after_it() -> None:
    signals = [(T0, "buy", limit(Side.BUY, 990_00)), (T0, "sell", limit(Side.SELL, 1004_00))]
    events = live(signals)
    cancels = [e for e in events if isinstance(e, OrderCancelled)]
    assert {(c.reason, c.ts, c.leaves_quantity) for c in cancels} == {("kill_switch", KILL, 5)}
    assert len(cancels) == 2
    assert not [e for e in events if isinstance(e, OrderFilled)]  # 1005 at 17 ms: too late
    without = live(signals, kill_at=None)
    assert [e.ts for e in without if isinstance(e, OrderFilled)] == [T0 + 17 * MS]


def test_fills_before_the_switch_stand_and_later_orders_are_untouched() -> None:
    signals = [(T0, "dip", limit(Side.BUY, 995_00)),  # fills at 5 ms, before the switch
               (T0 + 12 * MS, "after", limit(Side.BUY, 995_00))]  # arrives after it
    events = live(signals)
    assert {(e.ts, e.quantity) for e in events if isinstance(e, OrderFilled)} == {
        (T0 + 5 * MS, 5), (T0 + 15 * MS, 5)}
    assert not [e for e in events if isinstance(e, OrderCancelled)]


def test_a_rebuild_or_a_lagging_engine_cancels_as_the_live_run_did() -> None:
    signals = [(T0, "buy", limit(Side.BUY, 990_00)), (T0, "sell", limit(Side.SELL, 1004_00)),
               (T0, "dip", limit(Side.BUY, 995_00, qty=3)),
               (T0 + 2 * MS, "bracket", sig(Side.BUY, 2, take_profit=1004_00,
                                            stop_loss=990_00))]
    in_time = live(signals)
    assert outcome(rebuilt(signals)) == outcome(in_time)
    # the bracket's entry filled before the switch: its legs, placed then, are cancelled too
    legs = [e for e in in_time if isinstance(e, OrderCancelled) and e.reason == "kill_switch"]
    assert len(legs) == 4  # buy, sell and the bracket's two legs
    assert {e.ts for e in in_time if isinstance(e, OrderFilled)} == {T0 + 2 * MS, T0 + 5 * MS}


def test_an_engine_that_ran_ahead_cancels_at_once_and_a_redelivered_switch_does_nothing() -> None:
    x = ex()
    x.submit("buy", limit(Side.BUY, 990_00), T0)
    for t in TICKS[:15]:  # up to 15 ms, past the switch's 10 ms
        x.on_tick(t)
    out = x.kill(KILL)
    assert [(type(e).__name__, e.ts) for e in out] == [("OrderCancelled", T0 + 15 * MS)]
    assert x.kill(KILL) == []
    assert x.open_orders() == []


def test_a_halted_strategy_loses_its_orders_and_no_other_strategy_does() -> None:
    x = ex()
    other = Signal(strategy_id="s2", instrument_token=TOKEN, side=Side.BUY, quantity=1,
                   order_type=OrderType.LIMIT, limit_price=990_00, product=Product.MIS)
    x.submit("mine", limit(Side.BUY, 990_00), T0)
    x.submit("theirs", other, T0)
    for t in TICKS[:9]:
        x.on_tick(t)
    assert x.kill(KILL, "s1") == []  # a tick by the halt may still come: its order waits
    out = x.on_tick(TICKS[9])  # 10 ms: matched, no fill
    out += x.on_tick(TICKS[10])  # 11 ms: past the halt
    assert [(type(e).__name__, e.strategy_id, getattr(e, "reason", None), e.ts) for e in out] == [
        ("OrderCancelled", "s1", "strategy_halted", KILL)]
    late = x.submit("late", limit(Side.BUY, 1001_00), T0 + 5 * MS)  # processed after the halt
    for t in TICKS[11:]:
        late += x.on_tick(t)
    assert [(type(e).__name__, e.ts, getattr(e, "reason", None)) for e in late
            if not isinstance(e, OrderSubmitted)] == [
        ("OrderFilled", T0 + 5 * MS, None)]  # its in-time fill (marketable on arrival) stands
    assert [o.strategy_id for o in x.open_orders()] == ["s2"]


def test_a_switch_without_a_market_time_cancels_nothing_live_or_rebuilt() -> None:
    # market_ts None: set before any tick was on the log (or written before the field).
    # The engine's own progress would differ between live and a rebuild (which replays the
    # control topic after every tick): it is not used.
    handler = PaperEngineHandler(PaperVenue({}, seed=7))
    for t in TICKS[:5]:
        handler.exchange.on_tick(t)
    handler.exchange.submit("buy", limit(Side.BUY, 990_00), T0 + 5 * MS)
    env = new_envelope(KillSwitchSet(active=True, flatten=False), id="k", ts=KILL,
                       source="test", key="kill_switch", broker="paper")
    assert handler.handle(env, Record("paper.control", 0, 0, b"kill_switch", b"")) == ()
    assert len(handler.exchange.exchange_for("s1").open_orders()) == 1


def test_a_rebuild_follows_what_an_engine_that_read_the_switch_late_did() -> None:
    # Live: the engine matched ticks up to 15 ms before it read the switch set at 10 ms: the
    # dip buy filled at 15 ms and stands; the low buy, still open, was cancelled at 15 ms.
    signals = [(T0 + 6 * MS, "dip", limit(Side.BUY, 995_00)),  # after the first dip
               (T0 + 6 * MS, "low", limit(Side.BUY, 990_00))]
    x, live_out = ex(), []
    for t in TICKS[:6]:
        live_out += x.on_tick(t)
    for ts, sid, s in signals:
        live_out += x.submit(sid, s, ts)
    for t in TICKS[6:15]:
        live_out += x.on_tick(t)
    live_out += x.kill(KILL)
    for t in TICKS[15:]:
        live_out += x.on_tick(t)
    assert {(type(e).__name__, e.ts) for e in live_out
            if isinstance(e, OrderFilled | OrderCancelled)} == {
        ("OrderFilled", T0 + 15 * MS), ("OrderCancelled", T0 + 15 * MS)}
    # The rebuild, knowing what the engine recorded, does the same; without it, it would
    # have cancelled both at the switch's 10 ms.
    y = ex()
    y.recorded(live_out)
    assert outcome(rebuilt(signals)) != outcome(live_out)
    rebuilt_out: list[Payload] = []
    for t in TICKS:
        rebuilt_out += y.on_tick(t)
    rebuilt_out += y.kill(KILL)
    for ts, sid, s in signals:
        rebuilt_out += y.submit(sid, s, ts)
    assert outcome(rebuilt_out) == outcome(live_out)


def test_a_halt_without_flatten_leaves_a_brackets_exits_and_a_rebuild_agrees() -> None:
    # the strategy raised (or the trader halted it, keeping its positions): its own orders
    # go, and the stop-loss and target of what it bought keep protecting it; with flatten,
    # its positions are closed at market, so the exits go too
    entry = sig(Side.BUY, 5, stop_loss=990_00, take_profit=1004_00)
    rest = limit(Side.BUY, 980_00)

    def run(keep_exits: bool, rebuild: bool) -> list[tuple[Any, ...]]:
        x, out = ex(), []
        if rebuild:  # the control topic before the signals
            out += x.kill(KILL, "s1", keep_exits=keep_exits)
        out += x.submit("entry", entry, T0 + 1 * MS)
        out += x.submit("rest", rest, T0 + 1 * MS)
        for t in TICKS:
            out += x.on_tick(t)
            if not rebuild and t.ts == KILL:
                out += x.kill(KILL, "s1", keep_exits=keep_exits)
        return sorted((type(e).__name__, e.order_id, e.ts, getattr(e, "reason", None),
                       e.origin) for e in out if isinstance(e, OrderFilled | OrderCancelled))

    kept = run(keep_exits=True, rebuild=False)
    rested = order_id_for("rest")
    assert [(o == rested, ms(ts), reason, origin) for _, o, ts, reason, origin in sorted(
        kept, key=lambda e: (e[2], e[0]))] == [
        (False, 1, None, "signal"),  # the entry
        (True, 10, "strategy_halted", "signal"),  # its resting buy, at the halt
        (False, 17, "oco", "bracket"),  # the target filled at 1005 (17 ms), and its stop
        (False, 17, None, "bracket")]  # is cancelled
    assert run(keep_exits=True, rebuild=True) == kept
    flattened = run(keep_exits=False, rebuild=False)
    assert [(kind, ms(ts), reason, origin) for kind, _, ts, reason, origin in flattened
            if origin == "bracket"] == [("OrderCancelled", 10, "strategy_halted", "bracket")] * 2
    assert run(keep_exits=False, rebuild=True) == flattened


def ms(ts: int) -> int:
    return (ts - T0) // MS
