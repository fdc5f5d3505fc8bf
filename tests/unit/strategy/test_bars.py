from __future__ import annotations

from datetime import date
from itertools import groupby

from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.clock import hhmm, ist_ns, ist_time
from alpha_panda.strategy.bars import NS_PER_SECOND, BarBuilder

ticks = st.lists(
    st.tuples(st.integers(0, 5 * NS_PER_SECOND), st.integers(1, 10_000), st.integers(0, 50)),
    max_size=60,
).map(lambda xs: sorted(xs, key=lambda t: t[0]))


@settings(max_examples=200, deadline=None)
@given(ticks, st.integers(1, 3))
def test_bars_equal_a_group_by_interval(rows: list[tuple[int, int, int]], seconds: int) -> None:
    interval = seconds * NS_PER_SECOND
    builder = BarBuilder(7, seconds)
    bars = [b for ts, p, q in rows if (b := builder.update(ts, p, q)) is not None]
    last = builder.flush()
    if last is not None:
        bars.append(last)
    expected = []
    for start, group in groupby(rows, key=lambda r: r[0] - r[0] % interval):
        g = list(group)
        prices = [p for _, p, _ in g]
        expected.append((start, prices[0], max(prices), min(prices), prices[-1],
                         sum(q for _, _, q in g), len(g)))
    assert [(b.start_ns, b.open, b.high, b.low, b.close, b.volume, b.ticks) for b in bars] == expected
    assert all(b.end_ns == b.start_ns + interval and b.instrument_token == 7 for b in bars)


def _bar_starts(seconds: int, ticks_ist: list[str]) -> list[str]:
    """The IST start of each bar ``BarBuilder`` makes of ticks at these IST times."""
    builder = BarBuilder(7, seconds)
    bars = []
    for at in ticks_ist:
        day, clock = at.split()
        bar = builder.update(ist_ns(date.fromisoformat(day), hhmm(clock)), 100, 1)
        if bar is not None:
            bars.append(bar)
    if (last := builder.flush()) is not None:
        bars.append(last)
    return [ist_time(b.start_ns)[:16] for b in bars]


def test_hour_bars_start_at_the_0915_open_as_kites_candles_do() -> None:
    # On the epoch's grid the first hour bar held 09:15-09:30 alone, the next 09:30-10:30.
    ticks = ["2026-04-06 09:15", "2026-04-06 09:40", "2026-04-06 10:14", "2026-04-06 10:15",
             "2026-04-06 15:20", "2026-04-07 09:15", "2026-04-07 09:29"]
    assert _bar_starts(3600, ticks) == ["2026-04-06T09:15", "2026-04-06T10:15",
                                        "2026-04-06T15:15", "2026-04-07T09:15"]


def test_10_and_30_minute_bars_start_at_0915_and_day_bars_run_open_to_open() -> None:
    ticks = ["2026-04-06 09:15", "2026-04-06 09:24", "2026-04-06 09:25", "2026-04-06 09:44",
             "2026-04-06 09:45", "2026-04-07 09:14", "2026-04-07 09:15"]
    assert _bar_starts(600, ticks) == ["2026-04-06T09:15", "2026-04-06T09:25",
                                       "2026-04-06T09:35", "2026-04-06T09:45",
                                       "2026-04-07T09:05", "2026-04-07T09:15"]
    assert _bar_starts(1800, ticks) == ["2026-04-06T09:15", "2026-04-06T09:45",
                                        "2026-04-07T08:45", "2026-04-07T09:15"]
    assert _bar_starts(86_400, ticks) == ["2026-04-06T09:15", "2026-04-07T09:15"]
