"""Parameter sweeps: run a grid of parameter values on every core, rank the results."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from alpha_panda.domain.errors import StrategyConfigError
from alpha_panda.marketdata.files import TickColumns
from alpha_panda.strategy.config import StrategyConfig, config_from_mapping

_TICKS: TickColumns | None = None
_OPTIONS: dict[str, Any] = {}


def parse_grid(specs: Sequence[str], source: str = "--grid",
               repeated: list[str] | None = None) -> dict[str, list[Any]]:
    """``["fast=5,10", "slow=30"]`` -> ``{"fast": [5, 10], "slow": [30]}`` (ints, floats,
    true/false, else strings). A value given twice for a name (``fast=5,5``, or ``fast=5``
    and ``fast=5,10``) is kept once, in first-seen order: a combination runs once. Each
    repeat is noted in ``repeated`` (``"fast: 5"``), for the command to say so."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise StrategyConfigError(source, spec, "expected NAME=V1,V2,...")
        name = key.strip()
        given = [v.strip() for v in values.split(",") if v.strip()]
        if not name or not given:  # (``fast=,``: a sweep of nothing, "0 combinations")
            raise StrategyConfigError(source, spec, "expected NAME=V1,V2,...")
        kept = grid.setdefault(name, [])
        for value in (_value(v) for v in given):
            # by kind as well: 1 == True == 1.0 in Python, not as a parameter
            if any(type(k) is type(value) and k == value for k in kept):
                note = f"{name}: {value}"
                if repeated is not None and note not in repeated:
                    repeated.append(note)
                continue
            kept.append(value)
    return grid


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return {"true": True, "false": False}.get(text.lower(), text)


@dataclass(frozen=True, slots=True)
class SkippedCombination:
    """A combination of the grid whose parameters do not validate (``fast=40`` with
    ``slow=30``), and why: it is left out of the sweep, the rest still run."""

    params: dict[str, Any]  # the grid's values of this combination
    reason: str

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items())


@dataclass(frozen=True, slots=True)
class GridPlan:
    """The combinations of a grid: one validated config for each valid one, in grid order,
    and the invalid ones with their reasons."""

    configs: list[StrategyConfig]
    skipped: list[SkippedCombination]
    # combinations that validate to an earlier one's parameters (fast=5 and fast=5.0): run once
    same_as_earlier: list[str] = field(default_factory=list)


def grid_configs(base: StrategyConfig, grid: dict[str, list[Any]]) -> GridPlan:
    """Validate every combination of ``grid`` over ``base``'s params. An invalid one is
    skipped, not fatal: one bad corner of a sweep should not cost the others' results."""
    keys = list(grid)
    plan = GridPlan([], [])
    seen: set[str] = set()
    for combo in itertools.product(*(grid[k] for k in keys)):
        chosen = dict(zip(keys, combo, strict=True))
        label = ",".join(f"{k}={v}" for k, v in chosen.items())
        data = base.model_dump(mode="json", exclude={"source"})
        data["params"] = {**base.params, **chosen}
        source = f"{base.source or base.id} [{label}]"
        try:
            config = config_from_mapping(data, source)
        except StrategyConfigError as exc:
            plan.skipped.append(SkippedCombination(chosen, str(exc).removeprefix(f"{source}: ")))
            continue
        params = json.dumps(config.params, sort_keys=True, default=str)  # as validated
        if params in seen:
            plan.same_as_earlier.append(label)
            continue
        seen.add(params)
        plan.configs.append(config)
    return plan


def _init(ticks: TickColumns, options: dict[str, Any]) -> None:
    global _TICKS, _OPTIONS
    _TICKS = ticks
    _OPTIONS = options


def _run_one(config: StrategyConfig) -> dict[str, Any]:
    from alpha_panda.backtest.engine import run_backtest

    assert _TICKS is not None
    result = run_backtest(config, _TICKS, **_OPTIONS)
    return {"params": dict(config.params), **result.to_dict(timings=False)}


def run_grid(
    configs: Sequence[StrategyConfig], ticks: TickColumns, *, processes: int | None = None,
    on_done: Callable[[int, int], None] | None = None, **options: Any,
) -> list[dict[str, Any]]:
    """Backtest every config (in parallel on ``processes`` cores, default all), ranked by
    net P&L (best first; ties keep grid order), those whose strategy raised last (taken out
    of service, its figures are not the strategy's: no fills made ``0.00`` the best of a
    sweep that lost). ``options`` go to ``run_backtest``."""
    procs = processes or multiprocessing.cpu_count()
    rows: list[dict[str, Any]] = []
    if procs <= 1 or len(configs) <= 1:
        _init(ticks, options)
        for n, c in enumerate(configs, 1):
            rows.append(_run_one(c))
            if on_done:
                on_done(n, len(configs))
    else:
        # fork shares the loaded columns with the workers without copying them
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(procs, len(configs)), initializer=_init,
                      initargs=(ticks, options)) as pool:
            for n, row in enumerate(pool.imap(_run_one, configs), 1):
                rows.append(row)
                if on_done:
                    on_done(n, len(configs))
    order = sorted(range(len(rows)), key=lambda i: (bool(rows[i]["strategies_failed"]),
                                                    -Decimal(rows[i]["net_pnl"]), i))
    return [{"rank": r + 1, **rows[i]} for r, i in enumerate(order)]
