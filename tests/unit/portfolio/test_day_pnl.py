"""The day's P&L: today's fills plus the change in value since the day began, the carried
quantity valued at the previous close; the same whichever way the projector reads the
events (one by one, in batches, or as a rebuild reads them)."""

from __future__ import annotations

from datetime import date, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import (
    Charges,
    Envelope,
    MarketTick,
    OrderFilled,
    Payload,
    new_envelope,
)
from alpha_panda.domain.values import Product, Side
from alpha_panda.portfolio import PositionLedger
from alpha_panda.services.portfolio import PortfolioHandler
from alpha_panda.stream.log import Record

DAYS = [date(2026, 4, 6), date(2026, 4, 7), date(2026, 4, 8)]
REC = Record("t", 0, 0, None, b"")


def at(day: int, hh: int, mm: int = 0) -> int:
    return ist_ns(DAYS[day], time(hh, mm))


def tick(token: int, price: int, ts: int, close: int | None = None) -> MarketTick:
    return MarketTick(instrument_token=token, last_price=price, ts=ts, close=close)


def fill(n: int, side: Side, qty: int, price: int, ts: int, *, strategy: str = "a",
         token: int = 7, charges: int = 0, product: Product = Product.MIS) -> OrderFilled:
    return OrderFilled(order_id=f"o{n}", fill_id=f"f{n}", strategy_id=strategy,
                       instrument_token=token, side=side, quantity=qty, price=price,
                       cumulative_quantity=qty, leaves_quantity=0, average_price=price, ts=ts,
                       product=product, charges=Charges(brokerage=charges))


def env(data: Payload, n: int) -> Envelope[Payload]:
    ts = data.ts  # type: ignore[attr-defined]
    return new_envelope(data, id=f"e{n}", ts=ts, source="t", key="k", broker="paper")


def handler(snapshot_interval_ns: int = 10**9) -> PortfolioHandler:
    return PortfolioHandler("paper", PositionLedger(1_000_000_00),
                            snapshot_interval_ns=snapshot_interval_ns)


def one_by_one(events: list[Payload]) -> PortfolioHandler:
    h = handler()
    for n, e in enumerate(events):
        h.handle(env(e, n), REC)
    return h


def test_a_carried_position_moves_from_the_previous_close_and_todays_trades_from_their_price(
) -> None:
    h = one_by_one([
        tick(7, 100_00, at(0, 10)),
        fill(1, Side.BUY, 10, 100_00, at(0, 10, 1), product=Product.CNC),
        tick(7, 104_00, at(0, 15, 29)),
        # day 2: the exchange's close (₹105) is not the last trade seen (₹104)
        tick(7, 110_00, at(1, 9, 15), close=105_00),
        fill(2, Side.SELL, 4, 112_00, at(1, 9, 16), charges=20, product=Product.CNC),
    ])
    # sold 4 at ₹112 against ₹105: +₹28; 6 left at ₹110: +₹30; less ₹0.20 of charges
    assert h.day_pnl("a") == h.day_pnl(None) == 4 * 7_00 + 6 * 5_00 - 20 == 57_80
    (p,) = h.ledger.positions("a")
    assert h.day.position_pnl(p) == 57_80
    # the whole run: bought at ₹100, sold 4 at ₹112, 6 marked at ₹110
    assert h.ledger.snapshot("a").realized + h.ledger.snapshot("a").unrealized == 48_00 + 60_00


def test_without_closes_the_carried_quantity_is_valued_at_the_last_price_before_the_day(
) -> None:
    h = one_by_one([
        tick(7, 100_00, at(0, 10)),
        fill(1, Side.BUY, 10, 100_00, at(0, 10, 1)),
        tick(7, 104_00, at(0, 15, 29)),
        tick(7, 101_00, at(1, 9, 15)),
    ])
    assert h.day_pnl(None) == 10 * (101_00 - 104_00)
    assert h.day.day_lo == at(1, 0)


def test_a_day_without_ticks_yet_shows_todays_fills_only() -> None:
    h = one_by_one([
        tick(7, 100_00, at(0, 10)),
        fill(1, Side.BUY, 10, 100_00, at(0, 10, 1)),
        tick(8, 50_00, at(0, 11)),
        fill(2, Side.BUY, 2, 50_00, at(1, 9, 15), token=8, strategy="b", charges=5),
    ])
    # the fill began day 2: a's carried position has not moved since yesterday's ₹100
    assert h.day_pnl("a") == 0
    assert h.day_pnl("b") == -5
    assert h.day_pnl(None) == -5


def test_nothing_known_from_before_the_day_shows_no_move_on_the_carried_part() -> None:
    h = handler()
    # a rebuild that lost the earlier day's ticks (retention): a fill of day 1 read after
    # day 2's ticks, which carry no close
    h.handle(env(tick(7, 120_00, at(1, 10)), 0), REC)
    h.handle(env(fill(1, Side.BUY, 10, 100_00, at(0, 10)), 1), REC)
    assert h.day_pnl(None) == 0


def test_a_redelivered_fill_counts_once() -> None:
    buy = fill(1, Side.BUY, 10, 100_00, at(0, 10, 1), charges=7)
    h = one_by_one([tick(7, 100_00, at(0, 10)), buy, buy, tick(7, 101_00, at(0, 11))])
    assert h.day_pnl(None) == 10 * 1_00 - 7


def test_a_fill_of_an_earlier_day_read_late_is_carried_not_todays() -> None:
    late = fill(2, Side.BUY, 5, 99_00, at(0, 15, 29))
    h = one_by_one([
        tick(7, 100_00, at(0, 10)),
        fill(1, Side.BUY, 10, 100_00, at(0, 10, 1)),
        tick(7, 102_00, at(1, 9, 15), close=100_00),
        late,
    ])
    assert h.day_pnl(None) == 15 * (102_00 - 100_00)


# ---------------------------------------------------------------- any run, any reading order

@st.composite
def runs(draw: st.DrawFn) -> list[Payload]:
    """Three days of ticks on two instruments, each day's ticks carrying the previous
    day's last price as their close (as the simulator's and Kite's do) or no close (a
    replay file), and fills of two strategies at the last price, in both products (a trade
    is always at a price its instrument has ticked at)."""
    with_closes = draw(st.booleans())
    prices = {7: 100_00, 8: 2_000_00}
    closes: dict[int, int] = {}
    events: list[Payload] = []
    n = 0
    for day in range(3):
        for minute in range(draw(st.integers(1, 25))):
            ts = at(day, 9, 15) + minute * 60_000_000_000
            token = draw(st.sampled_from((7, 8)))
            if draw(st.booleans()) or not any(  # trades follow their instrument's ticks
                    isinstance(e, MarketTick) and e.instrument_token == token for e in events):
                prices[token] += draw(st.integers(-40, 40)) * 5
                events.append(tick(token, prices[token], ts, closes.get(token)))
            else:
                n += 1
                events.append(fill(n, draw(st.sampled_from(list(Side))),
                                   draw(st.integers(1, 30)), prices[token], ts, token=token,
                                   strategy=draw(st.sampled_from(("a", "b"))),
                                   charges=draw(st.integers(0, 90)),
                                   product=draw(st.sampled_from((Product.MIS, Product.CNC)))))
        if with_closes:
            closes = dict(prices)
    return events


def _net(events: list[Payload], strategy: str | None) -> int:
    """Independently: net P&L of a ledger fed ``events`` in their order."""
    ledger = PositionLedger(0)
    for e in events:
        if isinstance(e, MarketTick):
            ledger.mark(e.instrument_token, e.last_price)
        else:
            assert isinstance(e, OrderFilled)
            ledger.apply_fill(e)
            last = [t.last_price for t in events[:events.index(e)]
                    if isinstance(t, MarketTick) and t.instrument_token == e.instrument_token]
            if last:
                ledger.mark(e.instrument_token, last[-1])
    snap = ledger.snapshot(strategy)
    return snap.realized + snap.unrealized - snap.charges


@settings(max_examples=60, deadline=None)
@given(runs(), st.integers(1, 9))
def test_the_day_pnl_is_the_net_pnl_since_the_day_began_however_the_events_are_read(
        events: list[Payload], batch: int) -> None:
    live = one_by_one(events)
    last_day = max(e.ts for e in events)  # type: ignore[attr-defined]
    day_lo = ist_ns(DAYS[[at(d, 0) <= last_day for d in range(3)].count(True) - 1], time(0, 0))
    before = [e for e in events if e.ts < day_lo]  # type: ignore[attr-defined]

    # in batches, ticks conflated per instrument (no snapshot between them)
    batched = handler(snapshot_interval_ns=10**18)
    for i in range(0, len(events), batch):
        chunk = [env(e, i + k) for k, e in enumerate(events[i:i + batch])]
        batched.handle_batch(chunk, [REC] * len(chunk))
    # as a rebuild reads them: each instrument's ticks (one partition after another), then
    # the fills
    rebuilt = handler()
    order = ([e for e in events if isinstance(e, MarketTick) and e.instrument_token == 8]
             + [e for e in events if isinstance(e, MarketTick) and e.instrument_token == 7]
             + [e for e in events if isinstance(e, OrderFilled)])
    for n, e in enumerate(order):
        rebuilt.handle(env(e, n), REC)

    for scope in (None, "a", "b"):
        expected = _net(events, scope) - _net(before, scope)
        assert live.day_pnl(scope) == expected
        assert batched.day_pnl(scope) == expected
        assert rebuilt.day_pnl(scope) == expected


@settings(max_examples=40, deadline=None)
@given(runs())
def test_each_days_pnl_is_the_net_pnl_it_added_however_the_events_are_read(
        events: list[Payload]) -> None:
    from alpha_panda.domain.clock import ist_day_number
    from alpha_panda.services.readmodel import days_of

    live = one_by_one(events)
    # as a rebuild reads them: each instrument's ticks, then the fills; and in batches
    rebuilt = one_by_one(
        [e for e in events if isinstance(e, MarketTick) and e.instrument_token == 8]
        + [e for e in events if isinstance(e, MarketTick) and e.instrument_token == 7]
        + [e for e in events if isinstance(e, OrderFilled)])
    batched = handler(snapshot_interval_ns=10**18)
    batched.handle_batch([env(e, n) for n, e in enumerate(events)], [REC] * len(events))
    assert days_of(rebuilt) == days_of(batched) == days_of(live)
    days = {d.day: d for d in days_of(live)}
    for day in sorted({ist_day_number(e.ts) for e in events}):  # type: ignore[attr-defined]
        lo = ist_ns(date(1970, 1, 1) + timedelta(days=day), time(0, 0))
        upto = [e for e in events if e.ts < lo + 86_400 * 10**9]  # type: ignore[attr-defined]
        before = [e for e in events if e.ts < lo]  # type: ignore[attr-defined]
        made = {scope: _net(upto, scope) - _net(before, scope) for scope in (None, "a", "b")}
        figure = days.get((date(1970, 1, 1) + timedelta(days=day)).isoformat())
        if figure is None:  # nothing held or traded that day
            assert not any(made.values())
            continue
        assert figure.pnl == made[None]
        for sid in ("a", "b"):
            assert figure.strategies.get(sid, 0) == made[sid]


def test_the_days_kept_are_the_latest_and_unchanged_by_forgetting_older_ones() -> None:
    from alpha_panda.portfolio.day import DayHistory
    from alpha_panda.services.readmodel import days_of

    events: list[Payload] = [
        tick(7, 100_00, at(0, 10)), fill(1, Side.BUY, 10, 100_00, at(0, 10, 1)),
        tick(8, 50_00, at(0, 11)),
        tick(7, 103_00, at(1, 10)),  # instrument 8 does not tick again: its day-0 price carries
        fill(2, Side.BUY, 4, 50_00, at(1, 10, 5), token=8, strategy="b", product=Product.CNC),
        tick(7, 101_00, at(2, 10)), tick(8, 52_00, at(2, 11)),
    ]
    full = one_by_one(events)
    kept = handler()
    kept.history = DayHistory(kept.day.closes, keep=2)
    for n, e in enumerate(events):
        kept.handle(env(e, n), REC)
    every = days_of(full)
    assert [(d.day, d.pnl) for d in every] == [
        ("2026-04-06", 0), ("2026-04-07", 3_000), ("2026-04-08", -2_000 + 4 * 2_00)]
    assert days_of(kept) == every[1:]
    # rebuilt (each instrument's ticks, then the fills): no day before the ones kept
    rebuilt = handler()
    rebuilt.history = DayHistory(rebuilt.day.closes, keep=2)
    order = ([e for e in events if isinstance(e, MarketTick) and e.instrument_token == 7]
             + [e for e in events if isinstance(e, MarketTick) and e.instrument_token == 8]
             + [e for e in events if isinstance(e, OrderFilled)])
    for n, e in enumerate(order):
        rebuilt.handle(env(e, n), REC)
    assert days_of(rebuilt) == every[1:]
