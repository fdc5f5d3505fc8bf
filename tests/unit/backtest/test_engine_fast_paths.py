"""The backtest's shortcuts give exactly what the general code gives."""

from __future__ import annotations

import gc

from alpha_panda.backtest import run_backtest
from alpha_panda.backtest.wiring import Engine
from alpha_panda.domain.events import Signal
from alpha_panda.domain.values import Side
from alpha_panda.marketdata.files import generate_random_walk, tick_id
from alpha_panda.strategy.config import config_from_mapping
from alpha_panda.strategy.runner import signal_ids


def _config(costs: bool = False) -> object:
    return config_from_mapping({
        "id": "fast_paths", "strategy": "sma_cross", "instruments": [1, 2],
        "params": {"fast": 2, "slow": 5}, "execution": {"costs": costs},
    }, "test")


def test_one_signal_gets_the_id_signal_ids_gives() -> None:
    ticks = generate_random_walk(50, [1, 2], seed=1)
    eng = Engine([_config()], ticks, "replay:f.csv", 1_000_000_00, 0, None)  # type: ignore[list-item]
    sig = Signal(strategy_id="fast_paths", instrument_token=eng.tok_l[7], side=Side.BUY,
                 quantity=1, price_hint=eng.px_l[7])
    eng.signals(7, [sig], eng.tick_at(7))
    expected = signal_ids(tick_id("replay:f.csv", 7), [sig])[0]
    assert eng.risk._decisions.keys() == {expected}


def test_the_collector_is_paused_only_during_the_run() -> None:
    ticks = generate_random_walk(200, [1, 2], seed=2)
    assert gc.isenabled()
    run_backtest(_config(), ticks)  # type: ignore[arg-type]
    assert gc.isenabled()
    gc.disable()
    try:
        run_backtest(_config(), ticks)  # type: ignore[arg-type]
        assert not gc.isenabled()  # a caller's choice is left as it was
    finally:
        gc.enable()


def test_the_default_exchange_gets_no_ticks_when_no_strategy_uses_it() -> None:
    ticks = generate_random_walk(200, [1, 2], seed=3)
    eng = Engine([_config(costs=False)], ticks, "replay:x", 1_000_000_00, 0, None)  # type: ignore[list-item]
    assert len(eng.venue._exchanges) == 1  # costs off: not the default (costs on) exchange
    assert eng.venue.exchange_for("fast_paths").config.costs is False
