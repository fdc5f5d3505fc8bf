"""Strategy files through the config store (``load_strategies`` with a database URL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.adapters.sql.store import StrategyStore, sqlite_url
from alpha_panda.cli import app
from alpha_panda.services.strategy_configs import load_strategies
from alpha_panda.settings import Settings


def test_a_strategy_of_a_py_file_beside_its_yaml_loads_through_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `strategy new mine --dir strategies` writes mine.yaml naming mine.py beside it. Through
    # the store (ALPHA_PANDA_DATABASE_URL), the row's `strategy: mine.py:Mine` was looked up
    # beside "sqlite:/.../config.db#mine" and in the working directory: the store refused
    # the row, and `run --strategies strategies` ended in that StrategyConfigError.
    directory = tmp_path / "strategies"
    assert CliRunner().invoke(app, ["strategy", "new", "mine", "--dir", str(directory)]
                              ).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = sqlite_url(tmp_path / "config.db")
    settings = Settings().model_copy(update={"database_url": url, "strategies_dir": directory})
    configs, errors = load_strategies(settings)
    assert ([c.id for c in configs], errors) == (["mine"], [])
    assert configs[0].strategy_class().__name__ == "Mine"
    # a service process started with no directory of its own runs the stored row too
    empty = tmp_path / "empty"
    empty.mkdir()
    configs, errors = load_strategies(settings.model_copy(update={"strategies_dir": empty}))
    assert ([c.id for c in configs], errors) == (["mine"], [])
    store = StrategyStore(url)
    try:
        row = store.get("mine")
    finally:
        store.close()
    assert row is not None and row["strategy"] == f"{(directory / 'mine.py').resolve()}:Mine"
