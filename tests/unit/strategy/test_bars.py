from __future__ import annotations

from itertools import groupby

from hypothesis import given, settings
from hypothesis import strategies as st

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
