"""The strategy configs a run trades: loaded from the YAML directory and the config store
(``load_strategies``), and one strategy's brokers read the same way (``strategy_route``).

Apart from the run (``services.app``): the CLI's commands and the preflight checks read the
configs without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from alpha_panda.domain.errors import AlphaPandaError, ConfigurationError
from alpha_panda.marketdata.instruments import BY_TOKEN
from alpha_panda.settings import Settings
from alpha_panda.strategy.config import (
    NOT_SIMULATED,
    config_from_mapping,
    load_strategy_dir,
    located,
    unmodelled,
    unsimulated,
)

log = structlog.get_logger(__name__)

SAMPLE_STRATEGIES = Path(__file__).resolve().parent.parent / "sample_strategies"


def strategies_directory(settings: Settings) -> Path:
    """The directory the strategies load from, or the error that says what it is instead."""
    directory = settings.strategies_dir or SAMPLE_STRATEGIES
    if directory.is_file():  # (a strategy file given where its directory goes)
        raise ConfigurationError(f"strategies directory {directory} is a file: give the "
                                 f"directory of strategy files ({directory.parent})")
    if not directory.is_dir():
        raise ConfigurationError(f"strategies directory {directory} does not exist")
    return directory


def load_strategies(settings: Settings) -> tuple[list[Any], list[Any]]:
    """Strategy configs from the YAML directory and, when ``database_url`` is set, the config
    store (shared by every service process). The store is migrated on start; YAML files
    are written into it (a file is authoritative for its id) and every row is loaded."""
    directory = strategies_directory(settings)
    configs, errors = load_strategy_dir(directory)
    if settings.database_url:
        configs, errors = _through_store(settings.database_url, configs, errors)
    for err in errors:
        log.error("strategy.invalid", error=str(err))
    if settings.feed == "sim":  # valid, maybe a Kite token: but no tick ever reaches it here
        simulated = settings.simulator.instruments or BY_TOKEN.keys()
        for config, tokens in unsimulated(configs, simulated):
            log.warning("strategy.instruments_not_simulated", strategy=config.id,
                        source=config.source, instruments=tokens, detail=NOT_SIMULATED)
    for config in configs:
        if "paper" in config.brokers and (note := unmodelled(config)) is not None:
            log.warning("strategy.execution_not_modelled", strategy=config.id,
                        source=config.source, detail=note)
    if not configs:
        log.warning("strategy.none", directory=str(directory),
                    detail="no valid strategy: ticks flow, nothing trades")
    return configs, errors


@dataclass(frozen=True, slots=True)
class StrategyRoute:
    """The brokers one strategy trades on as its config says (``brokers``, with ``source``
    the file or store row read), or ``brokers=None`` when no valid config has its id
    (``source`` then says what was searched or why it could not be read)."""

    brokers: list[str] | None
    source: str


def strategy_route(settings: Settings, strategy_id: str) -> StrategyRoute:
    """Which brokers ``strategy_id`` trades on, read as ``load_strategies`` reads the configs:
    its YAML file is authoritative for its id, else its row in the config store (when
    ``database_url`` is set). Read-only: the store is neither migrated nor written.

    An id that an invalid file claims (or two files do) has no brokers to go by: which
    version the running system trades, if any, cannot be told from here. Nor has one when
    no strategies directory is set (``--strategies``, ``ALPHA_PANDA_STRATEGIES_DIR``) and
    no config store: the samples are the default, but a running system may have been given
    its own directory, where the same id trades on another broker.
    """
    if settings.strategies_dir is None and not settings.database_url:
        return StrategyRoute(None, "no strategies directory given (--strategies or "
                                   "ALPHA_PANDA_STRATEGIES_DIR) to read its brokers from")
    directory = settings.strategies_dir or SAMPLE_STRATEGIES
    configs, errors = load_strategy_dir(directory) if directory.is_dir() else ([], [])
    claimed = next((e for e in errors if e.strategy_id == strategy_id), None)
    if claimed is not None:
        return StrategyRoute(None, str(claimed))
    found = next((c for c in configs if c.id == strategy_id), None)
    searched = f"no valid strategy {strategy_id!r} in {directory}"
    if found is None and settings.database_url:
        from alpha_panda.adapters.sql.store import StrategyStore

        try:
            store = StrategyStore(settings.database_url)
        except AlphaPandaError as exc:  # not a database URL
            return StrategyRoute(None, str(exc))
        searched += f" or the config store {store.url}"
        try:
            row = store.get(strategy_id)
            found = None if row is None else config_from_mapping(row, f"{store.url}#{strategy_id}")
        except AlphaPandaError as exc:  # unreachable, not migrated, or an invalid row
            return StrategyRoute(None, str(exc).splitlines()[0])  # it names the store
        finally:
            store.close()
    if found is None:
        return StrategyRoute(None, searched)
    return StrategyRoute([b.value for b in found.brokers], found.source or strategy_id)


def _through_store(url: str, configs: list[Any], errors: list[Any]) -> tuple[list[Any], list[Any]]:
    from alpha_panda.adapters.sql.store import StrategyStore

    store = StrategyStore(url)
    try:
        store.upgrade()
        for config in configs:
            # (a file.py beside the YAML file: the row, read with no file beside it, names
            # it by its absolute path)
            store.put(located(config).model_dump(mode="json"))
        stored, store_errors = store.load()
    finally:
        store.close()
    # An id whose file is invalid, or that two files claim, does not run: not as the row an
    # earlier run stored either (an edit with a typo must not leave the old version trading).
    blocked = {e.strategy_id for e in errors if e.strategy_id is not None}
    stored = [c for c in stored if c.id not in blocked]
    log.info("strategy.store", url=store.url, strategies=len(stored))
    return stored, errors + store_errors
