"""Round trips: a live portfolio counts them (flat memory) with the backtest's figures."""

from __future__ import annotations

import random

from alpha_panda.backtest.metrics import RoundTripTracker, round_trips, win_rate
from alpha_panda.domain.events import OrderFilled, derive_id
from alpha_panda.domain.values import Product, Side
from alpha_panda.portfolio.ledger import Position


def _replay(tracker: RoundTripTracker, seed: int) -> None:
    """Random fills on two instruments, some crossing zero, with realized P&L and charges."""
    rng = random.Random(seed)
    positions = {t: Position("s", t) for t in (1, 2)}
    for ts in range(2000):
        pos = positions[rng.choice((1, 2))]
        before = pos.quantity
        size = rng.choice((1, 2, 3))
        toward_flat = before != 0 and rng.random() < 0.6  # back toward zero, or across it
        pos.quantity += -size * (1 if before > 0 else -1) if toward_flat else rng.choice((-size, size))
        if abs(pos.quantity) < abs(before) or (pos.quantity > 0) != (before > 0):
            pos.realized += rng.randint(-500, 500)  # something was closed
        charge = rng.randint(0, 40)
        pos.charges += charge
        tracker.after_fill(pos, before, ts, charge)


def test_a_counting_tracker_gives_the_listing_trackers_figures() -> None:
    listing, counting = RoundTripTracker(), RoundTripTracker(keep_trips=False)
    _replay(listing, seed=7)
    _replay(counting, seed=7)
    assert len(listing.trips) > 100  # the replay closed many trips, some won, some lost
    assert 0 < win_rate(listing.trips) < 1
    assert counting.trips == []  # nothing kept
    assert counting.closed == listing.closed == len(listing.trips)
    assert counting.won == sum(1 for t in listing.trips if t.pnl > 0)
    assert counting.win_rate == listing.win_rate == win_rate(listing.trips)
    assert counting.won_gross == sum(1 for t in listing.trips if t.gross_pnl > 0)
    assert counting.gross_win_rate == listing.gross_win_rate > listing.win_rate
    assert counting.time_in_market(2000) == listing.time_in_market(2000)


def _fill(n: int, side: Side, price: int, ts: int) -> OrderFilled:
    order_id = derive_id("signal", str(n))
    return OrderFilled(
        order_id=order_id, fill_id=derive_id(order_id, "fill", 0), strategy_id="s",
        instrument_token=11, side=side, quantity=1, price=price, cumulative_quantity=1,
        leaves_quantity=0, average_price=price, product=Product.CNC, ts=ts)


def test_round_trips_are_counted_in_event_time_order_whatever_order_the_fills_come_in() -> None:
    # Two trips, a win and a loss: bought 100 sold 110 (t1, t2), bought 110 sold 105 (t3, t4).
    # Off a pipeline's log the t3 buy can come before the t2 sell (a late-processed order).
    in_time = [_fill(1, Side.BUY, 100, 1), _fill(2, Side.SELL, 110, 2),
               _fill(3, Side.BUY, 110, 3), _fill(4, Side.SELL, 105, 4)]
    log_order = [in_time[0], in_time[2], in_time[1], in_time[3]]
    for fills in (in_time, log_order, list(reversed(in_time))):
        trips = round_trips(fills)
        assert (trips.closed, trips.won_gross) == (2, 1)
        assert [(t.opened_ns, t.closed_ns, t.gross_pnl) for t in trips.trips] == [
            (1, 2, 10), (3, 4, -5)]


def test_mis_and_cnc_trips_of_one_instrument_are_apart() -> None:
    def fill(n: int, side: Side, qty: int, price: int, product: Product) -> OrderFilled:
        return OrderFilled(order_id=f"o{n}", fill_id=f"f{n}", strategy_id="s", instrument_token=1,
                           side=side, quantity=qty, price=price, cumulative_quantity=qty,
                           leaves_quantity=0, average_price=price, product=product, ts=n * S)

    t = round_trips([fill(1, Side.BUY, 10, 100_00, Product.CNC),  # delivery, held through ...
                     fill(2, Side.BUY, 5, 100_00, Product.MIS),   # ... an intraday trip
                     fill(3, Side.SELL, 5, 110_00, Product.MIS),
                     fill(4, Side.SELL, 10, 120_00, Product.CNC)])
    assert [(r.product, r.opened_ns // S, r.closed_ns // S, r.quantity, r.gross_pnl)
            for r in t.trips] == [(Product.MIS, 2, 3, 5, 50_00), (Product.CNC, 1, 4, 10, 200_00)]
    assert (t.won, t.time_in_market(4 * S) // S) == (2, 3)


S = 1_000_000_000


def _at(order_id: str, side: Side, price: int, ts: int, origin: str = "signal") -> OrderFilled:
    return OrderFilled(order_id=order_id, fill_id=f"{order_id}-f", strategy_id="s",
                       instrument_token=1, side=side, quantity=10, price=price,
                       cumulative_quantity=10, leaves_quantity=0, average_price=price,
                       product=Product.MIS, ts=ts, origin=origin)  # type: ignore[arg-type]


def test_a_bracket_exit_and_the_re_entry_at_its_tick_are_two_trips() -> None:
    # A bracket's target fills at a tick (the venue's, as the tick comes) and the strategy,
    # flat again, buys at the same tick: one event time. Taken by order id, the re-entry
    # (id "a") came before the exit (id "b"): +10, +20, +10, ... and a strategy re-entering
    # each time its bracket closed had half its round trips counted (53 of 105 on a day).
    fills = [_at("z", Side.BUY, 100_00, 1 * S),
             _at("b", Side.SELL, 110_00, 2 * S, "bracket"), _at("a", Side.BUY, 110_00, 2 * S),
             _at("c", Side.SELL, 105_00, 3 * S, "bracket")]
    t = round_trips(fills)
    assert [(r.opened_ns // S, r.closed_ns // S, r.quantity, r.gross_pnl) for r in t.trips] == [
        (1, 2, 10, 100_00), (2, 3, 10, -50_00)]
    assert (t.closed, t.won) == (2, 1)
    # from flat, an entry and its own leg at one tick (a stop entry gapped through its
    # target): the entry is first, a long trip, whatever the ids
    gapped = round_trips([_at("b", Side.BUY, 100_00, 1 * S),
                          _at("a", Side.SELL, 102_00, 1 * S, "bracket")])
    assert [(r.quantity, r.gross_pnl) for r in gapped.trips] == [(10, 20_00)]
