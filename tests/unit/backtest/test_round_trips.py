"""Round trips: a live portfolio counts them (flat memory) with the backtest's figures."""

from __future__ import annotations

import random

from alpha_panda.backtest.metrics import RoundTripTracker, win_rate
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
