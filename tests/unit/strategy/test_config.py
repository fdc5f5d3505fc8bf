from __future__ import annotations

from pathlib import Path

import pytest

from alpha_panda.domain.errors import StrategyConfigError
from alpha_panda.domain.values import Broker
from alpha_panda.strategy.config import config_from_mapping, load_strategy_dir, load_strategy_file

GOOD = """\
id: sma_cross_banks
strategy: sma_cross
instruments: [341249, 1270529]
brokers: [paper]
params: {fast: 10, slow: 30, quantity: 1}
risk: {max_position: 50}
execution:
  costs: true
  slippage_bps: 0
  latency_ms: 0
"""


def test_the_architecture_example_loads_with_defaults_filled(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(GOOD)
    config = load_strategy_file(f)
    assert config.id == "sma_cross_banks"
    assert config.instruments == [341249, 1270529]
    assert config.brokers == [Broker.PAPER]
    assert config.params == {"fast": 10, "slow": 30, "quantity": 1}
    assert config.risk == {"max_position": 50}
    assert config.execution.costs is True and config.enabled is True


def test_minimal_config_gets_paper_only_and_default_params() -> None:
    config = config_from_mapping({"id": "x", "strategy": "sma_cross", "instruments": [1]})
    assert config.brokers == [Broker.PAPER]
    assert config.params == {"fast": 10, "slow": 30, "quantity": 1}


def test_a_class_path_is_accepted() -> None:
    config = config_from_mapping({
        "id": "x", "strategy": "alpha_panda.strategy.builtins.sma_cross:SmaCross",
        "instruments": [1],
    })
    assert config.strategy_class().__name__ == "SmaCross"


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"strategy": "nope"}, "strategy", "unknown strategy 'nope'"),
        ({"strategy": "json:loads"}, "strategy", "not a Strategy"),
        ({"strategy": "no_such_module_xyz:A"}, "strategy", "cannot import"),
        ({"instruments": []}, "instruments", "at least 1"),
        ({"params": {"fsat": 3}}, "params.fsat", "unknown field"),
        ({"params": {"fast": "ten"}}, "params.fast", "valid integer"),
        ({"params": {"fast": 40}}, "params", "fast (40) must be smaller than slow (30)"),
        ({"brokers": ["nse"]}, "brokers.0", "paper"),
        ({"execution": {"costs": "maybe"}}, "execution.costs", "boolean"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"risk": {"max_postion": 5}}, "risk", "unknown risk limit(s) ['max_postion']"),
        ({"risk": {"max_position": -1}}, "risk", "max_position must be a non-negative integer"),
    ],
)
def test_errors_name_the_source_and_the_field(patch: dict[str, object], field: str, words: str) -> None:
    data = {"id": "x", "strategy": "sma_cross", "instruments": [1], **patch}
    with pytest.raises(StrategyConfigError) as err:
        config_from_mapping(data, "strategies/x.yaml")
    assert err.value.source == "strategies/x.yaml"
    assert err.value.field == field
    assert str(err.value).startswith(f"strategies/x.yaml: {field}: ")
    assert words in str(err.value)


def test_a_broken_file_in_a_directory_does_not_stop_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text("id: b\nstrategy: sma_cross\ninstruments: [1]\nparams: {slow: x}\n")
    (tmp_path / "c.yml").write_text("id: [unclosed\n")
    (tmp_path / "d.yaml").write_text(GOOD)  # duplicate id
    (tmp_path / "notes.txt").write_text("ignored")
    configs, errors = load_strategy_dir(tmp_path)
    assert [c.id for c in configs] == ["sma_cross_banks"]
    messages = sorted(str(e) for e in errors)
    assert messages[0].startswith(f"{tmp_path / 'b.yaml'}: params.slow:")
    assert messages[1].startswith(f"{tmp_path / 'c.yml'}: invalid YAML")
    assert messages[2].startswith(f"{tmp_path / 'd.yaml'}: id: duplicate strategy id")
