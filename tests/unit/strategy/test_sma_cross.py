from __future__ import annotations

import random
from fractions import Fraction

import pytest

from alpha_panda.domain.events import MarketTick
from alpha_panda.domain.values import Side
from alpha_panda.strategy.config import config_from_mapping
from alpha_panda.strategy.runner import StrategyRunner


def reference(prices: list[int], fast: int, slow: int, qty: int) -> list[tuple[int, Side, int]]:
    """The issue's definition, written the slow obvious way with exact fractions."""
    out = []
    last_sign = 0
    position = 0
    for i in range(len(prices)):
        if i + 1 < slow:
            continue
        f = Fraction(sum(prices[i + 1 - fast : i + 1]), fast)
        s = Fraction(sum(prices[i + 1 - slow : i + 1]), slow)
        sign = (f > s) - (f < s)
        if sign == 0:
            continue
        if last_sign < 0 < sign and position == 0:
            out.append((i, Side.BUY, qty))
            position += qty
        elif last_sign > 0 > sign and position > 0:
            out.append((i, Side.SELL, position))
            position = 0
        last_sign = sign
    return out


def run(prices: list[int], fast: int, slow: int, qty: int) -> list[tuple[int, Side, int]]:
    config = config_from_mapping({
        "id": "s", "strategy": "sma_cross", "instruments": [7],
        "params": {"fast": fast, "slow": slow, "quantity": qty},
    })
    runner = StrategyRunner([config])
    out = []
    for i, p in enumerate(prices):
        for sig in runner.on_tick(MarketTick(instrument_token=7, last_price=p, ts=i)):
            out.append((i, sig.side, sig.quantity))
    return out


@pytest.mark.parametrize(("fast", "slow", "seed"), [(2, 3, 0), (3, 7, 1), (10, 30, 2), (5, 6, 3)])
def test_matches_the_reference_definition_on_a_random_walk(fast: int, slow: int, seed: int) -> None:
    rng = random.Random(seed)
    prices = [100_000]
    for _ in range(3000):
        prices.append(max(5, prices[-1] + 5 * rng.choice((-1, 0, 1))))
    expected = reference(prices, fast, slow, 3)
    assert len(expected) > 10
    assert run(prices, fast, slow, 3) == expected


def test_nothing_before_slow_ticks_and_a_flat_difference_keeps_state() -> None:
    # Down then flat (diff 0: no change), then up: buys once, at the first positive sign.
    prices = [100, 95, 90, 90, 90, 90, 95, 100]
    assert run(prices, 2, 3, 1) == reference(prices, 2, 3, 1) == [(6, Side.BUY, 1)]
    assert run(prices[:2], 1, 2, 1) == []
