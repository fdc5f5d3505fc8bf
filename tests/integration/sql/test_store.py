"""StrategyStore against SQLite (the embedded default) and a private PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert

from alpha_panda.adapters.sql.schema import metadata, strategy_configs
from alpha_panda.adapters.sql.store import MIGRATIONS, StrategyStore, normalize_url
from alpha_panda.domain.errors import StrategyConfigError, TransientError, ValidationError
from alpha_panda.strategy.config import config_from_mapping
from alpha_panda.testing.postgres import PostgresServer, start_postgres_server
from alpha_panda.testing.redis_server import free_port

pytestmark = pytest.mark.integration

YAML = """
id: sma_cross_banks
strategy: sma_cross
instruments: [341249, 1270529]
brokers: [paper, zerodha]
params: {fast: 10, slow: 30, quantity: 2}
risk: {max_position: 50}
execution: {costs: true, slippage_bps: 5, latency_ms: 0}
"""

_n = iter(range(1_000_000))


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = start_postgres_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'config.db'}"
    server: PostgresServer = request.getfixturevalue("pg")
    return server.create_database(f"store_{next(_n)}")


@pytest.fixture
def store(url: str) -> Iterator[StrategyStore]:
    s = StrategyStore(url)
    s.upgrade()
    try:
        yield s
    finally:
        s.close()


def test_upgrade_is_idempotent_and_matches_the_model(url: str) -> None:
    s = StrategyStore(url)
    assert s.revision() is None
    assert s.upgrade() == StrategyStore.head()
    assert s.upgrade() == StrategyStore.head()  # a restart runs it again: nothing to do
    s.close()
    engine = create_engine(normalize_url(url))
    with engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert drift == []  # migrations and schema.py describe the same table


def test_a_yaml_file_round_trips_through_a_row(store: StrategyStore) -> None:
    data = yaml.safe_load(YAML)
    saved = store.put(data)
    expected = config_from_mapping(data).model_dump(mode="json")
    assert saved == expected
    assert store.get("sma_cross_banks") == expected
    assert store.list() == [expected]
    [config], errors = store.load()
    assert errors == []
    assert config.brokers == ["paper", "zerodha"] and config.execution.slippage_bps == 5
    assert config.risk == {"max_position": 50}


def test_put_replaces_and_list_is_sorted(store: StrategyStore) -> None:
    base: dict[str, Any] = {"strategy": "sma_cross", "instruments": [408065]}
    store.put({**base, "id": "zeta"})
    store.put({**base, "id": "alpha", "params": {"fast": 3, "slow": 9}})
    store.put({**base, "id": "alpha", "params": {"fast": 4, "slow": 12}})
    assert [c["id"] for c in store.list()] == ["alpha", "zeta"]
    got = store.get("alpha")
    assert got is not None and got["params"]["fast"] == 4 and got["params"]["quantity"] == 1


def test_invalid_configs_are_refused_and_nothing_is_written(store: StrategyStore) -> None:
    with pytest.raises(StrategyConfigError, match="params.fast"):
        store.put({"id": "bad", "strategy": "sma_cross", "instruments": [1], "params": {"fast": "x"}})
    with pytest.raises(StrategyConfigError, match="unknown strategy"):
        store.put({"id": "bad", "strategy": "no_such_thing", "instruments": [1]})
    with pytest.raises(StrategyConfigError, match="brokers"):
        store.put({"id": "bad", "strategy": "sma_cross", "instruments": [1], "brokers": ["kite"]})
    assert store.list() == [] and store.get("bad") is None


def test_enable_disable_and_delete(store: StrategyStore) -> None:
    store.put({"id": "s1", "strategy": "sma_cross", "instruments": [341249]})
    store.set_enabled("s1", False)
    got = store.get("s1")
    assert got is not None and got["enabled"] is False
    [config], _ = store.load()
    assert config.enabled is False
    store.set_enabled("s1", True)
    assert (store.get("s1") or {})["enabled"] is True
    store.delete("s1")
    assert store.get("s1") is None
    with pytest.raises(ValidationError, match="no strategy 's1'"):
        store.delete("s1")
    with pytest.raises(ValidationError, match="no strategy 'ghost'"):
        store.set_enabled("ghost", True)


def test_a_hand_edited_bad_row_is_reported_not_loaded(store: StrategyStore, url: str) -> None:
    store.put({"id": "good", "strategy": "sma_cross", "instruments": [341249]})
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(insert(strategy_configs).values(
            id="edited", strategy="sma_cross", instruments=[341249], brokers=["paper"],
            params={"fast": -3}, risk={}, execution={},
        ))
    engine.dispose()
    configs, errors = store.load()
    assert [c.id for c in configs] == ["good"]
    [error] = errors
    assert error.field == "params.fast" and "#edited" in error.source


def test_rows_survive_reopening(url: str) -> None:
    first = StrategyStore(url)
    first.upgrade()
    first.put({"id": "kept", "strategy": "sma_cross", "instruments": [341249]})
    first.close()
    second = StrategyStore(url)
    assert second.upgrade() == StrategyStore.head()
    assert [c["id"] for c in second.list()] == ["kept"]
    second.close()


def test_concurrent_starts_migrate_once(pg: PostgresServer) -> None:
    url = pg.create_database(f"race_{next(_n)}")
    stores = [StrategyStore(url) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        # .result() re-raises any failure of a concurrent upgrade here
        results = [f.result() for f in [pool.submit(s.upgrade) for s in stores]]
    for s in stores:
        s.close()
    assert results == [StrategyStore.head()] * 4


def test_unreachable_database_is_transient_and_hides_the_password() -> None:
    store = StrategyStore(f"postgresql://ap:hunter2@127.0.0.1:{free_port()}/config")
    with pytest.raises(TransientError, match="config store") as info:
        store.list()
    assert "hunter2" not in str(info.value) and "***" in store.url
    store.close()


def test_seed_adds_missing_ids_and_never_overwrites(store: StrategyStore) -> None:
    files = [
        config_from_mapping(yaml.safe_load(YAML), "samples/sma.yaml"),
        {"id": "momentum", "strategy": "sma_cross", "instruments": [408065]},
    ]
    assert store.seed(files) == ["sma_cross_banks", "momentum"]
    store.set_enabled("sma_cross_banks", False)  # the operator's edit
    assert store.seed(files) == []
    got = store.get("sma_cross_banks")
    assert got is not None and got["enabled"] is False
    with pytest.raises(StrategyConfigError, match="unknown strategy"):
        store.seed([{"id": "bad", "strategy": "nope", "instruments": [1]}])
    assert [c["id"] for c in store.list()] == ["momentum", "sma_cross_banks"]


def test_rows_stored_before_exit_at_get_what_their_file_would_give_now(url: str) -> None:
    store = StrategyStore(url)  # (makes the SQLite file's folder)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")  # a store written by the previous version
        for sid, product in (("intraday", "MIS"), ("delivery", "CNC")):
            conn.execute(insert(strategy_configs).values(
                id=sid, strategy="sma_cross", instruments=[1], brokers=["paper"], params={},
                risk={}, execution={}, product=product))
    engine.dispose()
    try:
        assert store.upgrade() == StrategyStore.head()
        configs, errors = store.load()
        assert errors == []
        assert {c.id: c.exit_at for c in configs} == {"intraday": time(15, 15), "delivery": None}
        # and an MIS strategy saved with exit_at: null keeps it
        store.put({"id": "held", "strategy": "sma_cross", "instruments": [1], "product": "MIS",
                   "exit_at": None})
        assert store.get("held")["exit_at"] is None
    finally:
        store.close()
