"""Each indicator against a straightforward (re-computed from scratch) reference."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from alpha_panda.strategy.indicators import (
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    VWAP,
    WMA,
    Bollinger,
    RollingHigh,
    RollingLow,
    ZScore,
)


def walk(n: int = 400, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    xs = [100_000]
    for _ in range(n - 1):
        xs.append(xs[-1] + 5 * rng.choice((-2, -1, 0, 0, 1, 2)))
    return xs


XS = walk()


def ref_ema(xs: list[float], n: int) -> list[float | None]:
    out: list[float | None] = []
    value: float | None = None
    for i, x in enumerate(xs):
        if i + 1 == n:
            value = sum(xs[:n]) / n
        elif value is not None:
            value = value + 2 / (n + 1) * (x - value)
        out.append(value)
    return out


def close(a: float | None, b: float | None, tol: float = 1e-7) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


@pytest.mark.parametrize("n", [1, 5, 30])
def test_sma_wma(n: int) -> None:
    sma, wma = SMA(n), WMA(n)
    for i, x in enumerate(XS):
        s, w = sma.update(x), wma.update(x)
        if i + 1 < n:
            assert s is None and w is None
            continue
        window = XS[i + 1 - n : i + 1]
        assert sma.sum == sum(window)  # exact on paise
        assert close(s, sum(window) / n)
        assert close(w, sum((k + 1) * v for k, v in enumerate(window)) / (n * (n + 1) / 2))


@pytest.mark.parametrize("n", [1, 3, 20])
def test_ema(n: int) -> None:
    ema = EMA(n)
    assert all(close(ema.update(x), r) for x, r in zip(XS, ref_ema(XS, n), strict=True))


@pytest.mark.parametrize("n", [2, 14])
def test_rsi_wilder(n: int) -> None:
    rsi = RSI(n)
    got = [rsi.update(x) for x in XS]
    changes = [b - a for a, b in itertools.pairwise(XS)]
    gain = sum(max(c, 0) for c in changes[:n]) / n
    loss = sum(max(-c, 0) for c in changes[:n]) / n
    expected: list[float | None] = [None] * n
    for i, c in enumerate(changes[n - 1 :]):
        if i:
            gain = (gain * (n - 1) + max(c, 0)) / n
            loss = (loss * (n - 1) + max(-c, 0)) / n
        expected.append(100.0 if loss == 0 else 100 - 100 / (1 + gain / loss))
    assert all(close(a, b) for a, b in zip(got, expected, strict=True))
    assert all(0 <= v <= 100 for v in got if v is not None)


def test_rsi_edges() -> None:
    up, flat = RSI(3), RSI(3)
    for x in range(10):
        up.update(x)
        flat.update(5)
    assert up.value == 100.0 and flat.value == 50.0


def test_macd() -> None:
    macd = MACD(3, 6, 4)
    got = [(macd.update(x), macd.signal) for x in XS]
    fast, slow = ref_ema(XS, 3), ref_ema(XS, 6)
    line = [None if s is None or f is None else f - s for f, s in zip(fast, slow, strict=True)]
    sig = [None] * 5 + ref_ema([v for v in line if v is not None], 4)  # type: ignore[misc]
    assert all(close(g[0], ln, 1e-6) and close(g[1], s, 1e-6)
               for g, ln, s in zip(got, line, sig, strict=True))
    assert macd.histogram == pytest.approx(got[-1][0] - got[-1][1])  # type: ignore[operator]


@pytest.mark.parametrize("n", [1, 5, 20])
def test_bollinger_and_zscore(n: int) -> None:
    bb, z = Bollinger(n, 2.5), ZScore(n)
    for i, x in enumerate(XS):
        bb.update(x)
        z.update(x)
        if i + 1 < n:
            assert bb.middle is None and z.value is None
            continue
        w = XS[i + 1 - n : i + 1]
        mean = sum(w) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in w) / n)
        assert close(bb.middle, mean) and close(bb.upper, mean + 2.5 * std, 1e-6)
        assert close(bb.lower, mean - 2.5 * std, 1e-6)
        assert close(z.value, 0.0 if std == 0 else (x - mean) / std, 1e-5)


def test_atr_on_bars() -> None:
    rng = random.Random(3)
    bars = []
    for x in XS[:200]:
        hi, lo = x + rng.randint(0, 20), x - rng.randint(0, 20)
        bars.append((hi, lo, x))
    atr, n = ATR(5), 5
    got = [atr.update(*b) for b in bars]
    trs = [bars[0][0] - bars[0][1]] + [
        max(h - lo, abs(h - bars[i][2]), abs(lo - bars[i][2])) for i, (h, lo, _) in
        enumerate(bars[1:])]
    value = sum(trs[:n]) / n
    expected: list[float | None] = [None] * (n - 1) + [value]
    for tr in trs[n:]:
        value = (value * (n - 1) + tr) / n
        expected.append(value)
    assert all(close(a, b) for a, b in zip(got, expected, strict=True))


def test_vwap_and_reset() -> None:
    v = VWAP()
    assert v.update(100, 0) is None
    rng = random.Random(1)
    pairs = [(x, rng.randint(0, 50)) for x in XS[:100]]
    for p, q in pairs:
        v.update(p, q)
    assert close(v.value, sum(p * q for p, q in pairs) / sum(q for _, q in pairs))
    v.reset()
    assert v.value is None and v.update(7, 2) == 7


@pytest.mark.parametrize("n", [1, 4, 25])
def test_rolling_high_low(n: int) -> None:
    hi, lo = RollingHigh(n), RollingLow(n)
    for i, x in enumerate(XS):
        h, low = hi.update(x), lo.update(x)
        if i + 1 >= n:
            assert h == max(XS[i + 1 - n : i + 1]) and low == min(XS[i + 1 - n : i + 1])
        else:
            assert h is None and low is None
