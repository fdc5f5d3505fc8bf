"""The in-memory rate-limit store: sliding windows that hold even for out-of-order event times."""

from __future__ import annotations

import random

from alpha_panda.risk import InMemoryRiskStateStore, RateWindow

SECOND_US = 1_000_000


def test_out_of_order_orders_never_exceed_the_limit_in_any_window() -> None:
    store = InMemoryRiskStateStore()
    window = RateWindow("RATE_LIMIT_SECOND", 10, SECOND_US)
    rng = random.Random(5)
    times = sorted(rng.randrange(0, 5 * SECOND_US) for _ in range(400))
    # shuffle locally: each order arrives up to ~0.3 s out of event-time order
    arrival = sorted(times, key=lambda t: t + rng.randrange(0, 300_000))
    admitted = [t for i, t in enumerate(arrival) if store.acquire("acct", f"o{i}", t, [window]) is None]
    admitted.sort()
    worst = max(sum(1 for a in admitted if t - SECOND_US < a <= t) for t in admitted)
    assert worst <= 10
    assert len(admitted) >= 30  # and it still admits orders in every second


def test_in_order_it_is_the_plain_sliding_window() -> None:
    store = InMemoryRiskStateStore()
    window = RateWindow("RATE_LIMIT_SECOND", 2, SECOND_US)
    got = [store.acquire("acct", f"o{i}", t, [window]) for i, t in enumerate((0, 10, 20, SECOND_US + 11))]
    assert got == [None, None, "RATE_LIMIT_SECOND", None]
    assert store.count("acct", window, SECOND_US + 11) == 1  # 0 and 10 slid out; 20 was refused
