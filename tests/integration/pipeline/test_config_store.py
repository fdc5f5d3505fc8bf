"""Strategy configs through the config store: YAML files are written in, every row is loaded,
so separate service processes share one set of strategies."""

from __future__ import annotations

from pathlib import Path

from alpha_panda.adapters.sql.store import StrategyStore, sqlite_url
from alpha_panda.services.strategy_configs import load_strategies
from alpha_panda.settings import Settings
from alpha_panda.testing.pipeline import write_strategy


def test_yaml_goes_into_the_store_and_rows_come_back(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "config.db")
    first = tmp_path / "first"
    write_strategy(first, id="from_yaml", tokens=[738561])
    settings = Settings().model_copy(update={"database_url": url, "strategies_dir": first})
    configs, errors = load_strategies(settings)
    assert [c.id for c in configs] == ["from_yaml"] and errors == []

    store = StrategyStore(url)
    store.put({"id": "from_db", "strategy": "sma_cross", "instruments": [341249],
               "params": {"fast": 2, "slow": 4}})
    store.close()
    # a service started with another (empty) directory still gets every stored strategy
    empty = tmp_path / "empty"
    empty.mkdir()
    configs, errors = load_strategies(settings.model_copy(update={"strategies_dir": empty}))
    assert sorted(c.id for c in configs) == ["from_db", "from_yaml"] and errors == []
    stored = {c.id: c.params for c in configs}["from_db"]
    assert (stored["fast"], stored["slow"]) == (2, 4)


def test_yaml_is_authoritative_for_its_id(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "config.db")
    write_strategy(tmp_path / "s", id="edited", tokens=[738561], quantity=2)
    settings = Settings().model_copy(update={"database_url": url, "strategies_dir": tmp_path / "s"})
    load_strategies(settings)
    write_strategy(tmp_path / "s", id="edited", tokens=[738561], quantity=7)
    configs, _ = load_strategies(settings)
    assert configs[0].params["quantity"] == 7


def test_an_id_two_files_claim_runs_in_neither_not_even_as_its_stored_row(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "config.db")
    write_strategy(tmp_path / "s", id="banks", tokens=[738561])
    settings = Settings().model_copy(update={"database_url": url, "strategies_dir": tmp_path / "s"})
    assert [c.id for c in load_strategies(settings)[0]] == ["banks"]  # stored now
    copy = (tmp_path / "s" / "banks.yaml").read_text().replace("738561", "341249")
    (tmp_path / "s" / "e_copy.yaml").write_text(copy)
    configs, errors = load_strategies(settings)
    assert configs == []
    assert sorted(str(e).split(":")[0] for e in errors) == sorted(
        str(tmp_path / "s" / name) for name in ("banks.yaml", "e_copy.yaml"))


def test_a_file_made_invalid_stops_its_strategy_not_leaving_the_stored_version_on(
        tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "config.db")
    path = write_strategy(tmp_path / "s", id="edited", tokens=[738561], quantity=2)
    settings = Settings().model_copy(update={"database_url": url, "strategies_dir": tmp_path / "s"})
    assert [c.id for c in load_strategies(settings)[0]] == ["edited"]  # stored now
    path.write_text(path.read_text().replace("quantity: 2", "quantity: -7"))  # a bad edit
    configs, errors = load_strategies(settings)
    assert configs == []
    [error] = errors
    assert error.strategy_id == "edited" and "quantity" in str(error)
