from __future__ import annotations

import json
import os
import sys
from datetime import time
from pathlib import Path

import pytest
import yaml

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
        # a module name that is empty or relative ended the check (and `run`) in a
        # ValueError / TypeError traceback
        ({"strategy": ":MyStrategy"}, "strategy", "cannot import module '': "),
        ({"strategy": ".mine:MyStrategy"}, "strategy", "cannot import module '.mine': "),
        ({"instruments": []}, "instruments", "at least 1"),
        # a token of 0 or below was taken (and never ticked)
        ({"instruments": [341249, 0]}, "instruments.1", "greater than 0 (got 0)"),
        ({"instruments": [-5]}, "instruments.0", "greater than 0 (got -5)"),
        # `id: off` (YAML 1.1's false) said only "Input should be a valid string (got False)"
        ({"id": False}, "id", ("YAML reads an unquoted yes, no, on, off, true or false as a "
                               "boolean: quote it (got False)")),
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
    (tmp_path / "e.yaml").write_text(GOOD.replace("sma_cross_banks", "other"))
    (tmp_path / "notes.txt").write_text("ignored")
    configs, errors = load_strategy_dir(tmp_path)
    assert [c.id for c in configs] == ["sma_cross_banks", "other"]
    messages = sorted(str(e) for e in errors)
    assert len(messages) == 2
    assert messages[0].startswith(f"{tmp_path / 'b.yaml'}: params.slow:")
    assert messages[1].startswith(f"{tmp_path / 'c.yml'}: invalid YAML")


def test_params_not_declared_as_strategy_params_are_an_error_not_a_traceback(
        tmp_path: Path) -> None:
    # `class Params:` without its base ended `strategy check` (and `run`) in "AttributeError:
    # type object 'Params' has no attribute 'model_validate'"
    (tmp_path / "mine.py").write_text(
        "from alpha_panda.strategy import Strategy\n\n\n"
        "class Mine(Strategy):\n    class Params:\n        period: int = 20\n")
    (tmp_path / "mine.yaml").write_text(
        "id: mine\nstrategy: mine.py:Mine\ninstruments: [738561]\nparams: {period: 5}\n")
    configs, errors = load_strategy_dir(tmp_path)
    assert configs == [] and [str(e) for e in errors] == [(
        f"{tmp_path / 'mine.yaml'}: strategy: Mine.Params is not a StrategyParams subclass: "
        "declare it as class Params(StrategyParams) (from alpha_panda.strategy)")]


def test_params_whose_own_check_raises_make_the_file_invalid_not_the_run_crash(
        tmp_path: Path) -> None:
    # a validator of the strategy's own dividing by a period of 0: a ZeroDivisionError
    # traceback ended `strategy check`, and `run` before any strategy started
    (tmp_path / "mine.py").write_text(
        "from pydantic import model_validator\n\n"
        "from alpha_panda.strategy import Strategy, StrategyParams\n\n\n"
        "class Mine(Strategy):\n    class Params(StrategyParams):\n"
        "        fast: int = 2\n        slow: int = 4\n\n"
        "        @model_validator(mode='after')\n        def _ratio(self):\n"
        "            if self.fast / self.slow > 0.5:\n                raise ValueError('close')\n"
        "            return self\n")
    (tmp_path / "mine.yaml").write_text(
        "id: mine\nstrategy: mine.py:Mine\ninstruments: [738561]\nparams: {slow: 0}\n")
    (tmp_path / "other.yaml").write_text(GOOD)
    configs, errors = load_strategy_dir(tmp_path)
    assert [c.id for c in configs] == ["sma_cross_banks"]
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'mine.yaml'}: params: ZeroDivisionError: division by zero"]


def _dup(tmp_path: Path, name: str, instruments: str = "[123]", params: str = "{}") -> None:
    (tmp_path / name).write_text(
        f"id: sma_cross_banks\nstrategy: sma_cross\ninstruments: {instruments}\nparams: {params}\n")


def test_an_id_in_two_files_runs_neither_and_each_names_the_other(tmp_path: Path) -> None:
    # Whichever sorted first used to win: e_dupid.yaml ran as sma_cross_banks on the wrong
    # instruments while the original was reported as the duplicate.
    (tmp_path / "sma_cross_banks.yaml").write_text(GOOD)
    _dup(tmp_path, "e_dupid.yaml")
    (tmp_path / "z.yaml").write_text(GOOD.replace("sma_cross_banks", "other"))
    configs, errors = load_strategy_dir(tmp_path)
    assert [c.id for c in configs] == ["other"]
    a, b = tmp_path / "e_dupid.yaml", tmp_path / "sma_cross_banks.yaml"
    tail = "none of these files runs until each has its own id"
    assert [str(e) for e in errors] == [
        f"{a}: id: duplicate strategy id 'sma_cross_banks' (also in {b}): {tail}",
        f"{b}: id: duplicate strategy id 'sma_cross_banks' (also in {a}): {tail}",
    ]
    assert all(e.field == "id" for e in errors)
    # what a config store needs to drop its row of that id as well
    assert [(type(e).__name__, getattr(e, "strategy_id", None)) for e in errors] == [
        ("DuplicateStrategyId", "sma_cross_banks")] * 2


def test_three_claims_of_one_id_each_name_both_others(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml", "c.yml"):
        _dup(tmp_path, name)
    configs, errors = load_strategy_dir(tmp_path)
    assert configs == []
    a, b, c = (str(tmp_path / n) for n in ("a.yaml", "b.yaml", "c.yml"))
    assert [str(e).split(" (also in ")[1].split(")")[0] for e in errors] == [
        f"{b}, {c}", f"{a}, {c}", f"{a}, {b}"]


def test_an_invalid_file_claiming_the_id_still_stops_the_valid_one(tmp_path: Path) -> None:
    # The user may be replacing the original with a new file: which one is meant is unknown.
    (tmp_path / "sma_cross_banks.yaml").write_text(GOOD)
    _dup(tmp_path, "v2.yaml", params="{fast: 30, slow: 10}")
    configs, errors = load_strategy_dir(tmp_path)
    assert configs == []
    original, v2 = tmp_path / "sma_cross_banks.yaml", tmp_path / "v2.yaml"
    assert [(e.source, e.field) for e in errors] == [
        (str(original), "id"), (str(v2), "params"), (str(v2), "id")]
    assert str(errors[1]) == f"{v2}: params: fast (30) must be smaller than slow (10)"
    assert f"(also in {v2})" in str(errors[0]) and f"(also in {original})" in str(errors[2])


@pytest.mark.parametrize(
    ("strategy", "params", "field", "message"),
    [
        ("sma_cross", {"fast": 30, "slow": 10}, "params",
         "fast (30) must be smaller than slow (10)"),
        ("sma_cross", {"quantity": 0}, "params.quantity", "Input should be greater than 0 (got 0)"),
        ("ema_cross", {"fast": 26}, "params", "fast (26) must be smaller than slow (26)"),
        ("ema_cross", {"slow": -5}, "params.slow", "Input should be greater than 0 (got -5)"),
        ("rsi", {"oversold": 70, "overbought": 30}, "params",
         "oversold (70) must be below overbought (30)"),
        ("rsi", {"period": 0}, "params.period", "Input should be greater than 0 (got 0)"),
        ("mean_reversion", {"oversold": 70, "overbought": 30}, "params",
         "oversold (70) must be below overbought (30)"),
        ("mean_reversion", {"period": 1}, "params.period",
         "Input should be greater than or equal to 2 (got 1)"),
        ("mean_reversion", {"k": 0}, "params.k", "Input should be greater than 0 (got 0)"),
        ("mean_reversion", {"k": float("inf")}, "params.k",
         "Input should be a finite number (got inf)"),
        ("momentum", {"exit_bps": 10_000}, "params.exit_bps",
         "Input should be less than 10000 (got 10000)"),
        ("momentum", {"lookback": 0}, "params.lookback", "Input should be greater than 0 (got 0)"),
        ("vwap_reversion", {"band_bps": 10_000}, "params.band_bps",
         "Input should be less than 10000 (got 10000)"),
        ("vwap_reversion", {"min_ticks": 0}, "params.min_ticks",
         "Input should be greater than 0 (got 0)"),
        ("breakout", {"atr_stop": -1.0}, "params.atr_stop",
         "Input should be greater than 0 (got -1.0)"),
        ("breakout", {"atr_stop": float("nan")}, "params.atr_stop",
         "Input should be a finite number (got nan)"),
    ],
)
def test_nonsensical_builtin_params_are_refused_naming_file_and_field(
    strategy: str, params: dict[str, object], field: str, message: str
) -> None:
    data = {"id": "x", "strategy": strategy, "instruments": [1], "params": params}
    with pytest.raises(StrategyConfigError) as err:
        config_from_mapping(data, "strategies/x.yaml")
    assert err.value.field == field
    assert str(err.value) == f"strategies/x.yaml: {field}: {message}"


def test_product_and_market_hours_read_as_a_trader_writes_them() -> None:
    base = {"id": "x", "strategy": "sma_cross", "instruments": [1]}
    assert config_from_mapping({**base, "product": "mis"}).product == "MIS"
    assert config_from_mapping(base).product == "CNC"
    # YAML reads an unquoted off as false
    unquoted = yaml.safe_load("execution: {market_hours: off}")
    assert config_from_mapping({**base, **unquoted}).execution.market_hours == "off"
    with pytest.raises(StrategyConfigError,
                       match=r"product: Input should be 'CNC' or 'MIS' \(got 'NRML'\)"):
        config_from_mapping({**base, "product": "NRML"})  # F&O: no square-off, no CNC rule


def test_an_intraday_strategy_exits_at_1515_unless_its_file_says_otherwise() -> None:
    base = {"id": "x", "strategy": "sma_cross", "instruments": [1]}
    assert config_from_mapping({**base, "product": "mis"}).exit_at == time(15, 15)
    assert config_from_mapping(base).exit_at is None  # delivery: held overnight
    assert config_from_mapping({**base, "product": "MIS", "exit_at": None}).exit_at is None
    # as a trader writes it in YAML: quoted, with or without a leading zero
    written = yaml.safe_load('product: MIS\nexit_at: "9:45"')
    assert config_from_mapping({**base, **written}).exit_at == time(9, 45)
    assert config_from_mapping({**base, "exit_at": "15:25"}).exit_at == time(15, 25)  # CNC


@pytest.mark.parametrize(("yaml_text", "words"), [
    # YAML reads an unquoted 15:15 as the number 915 (base 60), which pydantic would take
    # for 00:15:15
    ("product: MIS\nexit_at: 15:10", r'exit_at: .*put the IST time in quotes, exit_at: "15:15".*\(got 910\)'),
    ('product: MIS\nexit_at: "15:20"', "exit_at 15:20 is not before the 15:20 square-off"),
    ('exit_at: "16:00"', r"exit_at: .*16:00 is outside NSE's session \(09:15-15:30 IST\)"),
    ('exit_at: "quarter past three"', "exit_at: .*time"),
    ("exit_at: 9:30", r"exit_at: .*9:30 as 570\) \(got 570\)"),
    ("exit_at: 15.15", "exit_at: .*put the IST time in quotes"),  # (a float: a UTC time to pydantic)
    ('exit_at: "15:15+05:30"', "exit_at: .*without a zone"),  # (it crashed the loader)
    ('exit_at: "15:15:00.5"', "exit_at: .*to the minute or second"),  # (too long to store)
])
def test_a_wrong_exit_time_is_refused_saying_what_to_write(yaml_text: str, words: str) -> None:
    base = {"id": "x", "strategy": "sma_cross", "instruments": [1]}
    with pytest.raises(StrategyConfigError, match=words):
        config_from_mapping({**base, **yaml.safe_load(yaml_text)})


def test_a_class_not_in_its_module_is_named_with_the_strategies_there(tmp_path: Path) -> None:
    # it said "is not a Strategy subclass" for a class that was not there at all
    (tmp_path / "mine.py").write_text(
        "from alpha_panda.strategy import Strategy\n\n"
        "class OrbBanks(Strategy):\n    def on_tick(self, tick, ctx):\n        return None\n\n"
        "NOT_ONE = 3\n")
    base = {"id": "x", "instruments": [1]}
    source = str(tmp_path / "x.yaml")
    with pytest.raises(StrategyConfigError, match=r"has no 'OrbBank' \(its strategies: OrbBanks\)"):
        config_from_mapping({**base, "strategy": f"{tmp_path}/mine.py:OrbBank"}, source)
    with pytest.raises(StrategyConfigError, match="mine.py:NOT_ONE' is not a Strategy subclass"):
        config_from_mapping({**base, "strategy": f"{tmp_path}/mine.py:NOT_ONE"}, source)


_STRATEGY_USING = (
    "from alpha_panda.strategy import Strategy\n{imports}\n\n"
    "class Mine(Strategy):\n    def on_tick(self, tick, ctx):\n        return None\n")


def _strategy_dir(root: Path, name: str, qty: int, imports: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "myhelpers.py").write_text(f"QTY = {qty}\n")
    (d / "mine.py").write_text(_STRATEGY_USING.format(imports=imports))
    return d


def test_a_strategy_file_imports_its_own_directorys_helpers_relatively(tmp_path: Path) -> None:
    # two strategy directories, each with its own myhelpers.py: each strategy gets its own
    a = _strategy_dir(tmp_path, "a", 5, "from .myhelpers import QTY")
    b = _strategy_dir(tmp_path, "b", 7, "from .myhelpers import QTY")
    base = {"id": "x", "instruments": [1]}
    cls_a = config_from_mapping({**base, "strategy": f"{a}/mine.py:Mine"},
                                str(a / "x.yaml")).strategy_class()
    cls_b = config_from_mapping({**base, "strategy": f"{b}/mine.py:Mine"},
                                str(b / "x.yaml")).strategy_class()
    assert (sys.modules[cls_a.__module__].QTY, sys.modules[cls_b.__module__].QTY) == (5, 7)
    assert "myhelpers" not in sys.modules  # nothing top-level was added for either


def test_a_helper_named_like_the_stdlib_does_not_shadow_it(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    (d / "json.py").write_text("LOCAL = True\n")
    (d / "mine.py").write_text(_STRATEGY_USING.format(
        imports="import json as stdlib_json\nfrom .json import LOCAL"))
    cls = config_from_mapping({"id": "x", "instruments": [1], "strategy": f"{d}/mine.py:Mine"},
                              str(d / "x.yaml")).strategy_class()
    module = sys.modules[cls.__module__]
    assert module.LOCAL is True and module.stdlib_json is json
    assert sys.modules["json"] is json and not hasattr(json, "LOCAL")


def test_a_bare_import_of_a_sibling_says_to_import_it_relatively(tmp_path: Path) -> None:
    # `from myhelpers import QTY` ended in a bare "No module named 'myhelpers'"
    d = _strategy_dir(tmp_path, "s", 5, "from myhelpers import QTY")
    with pytest.raises(StrategyConfigError) as err:
        config_from_mapping({"id": "x", "instruments": [1], "strategy": f"{d}/mine.py:Mine"},
                            str(d / "x.yaml"))
    assert ("ModuleNotFoundError: No module named 'myhelpers': myhelpers.py is next to the "
            "strategy file; import it relatively, 'from .myhelpers import ...' (a bare import "
            "looks only in installed packages)") in str(err.value)
    assert "myhelpers" not in sys.modules


def test_a_strategy_file_in_a_directory_whose_name_is_not_utf8_loads(tmp_path: Path) -> None:
    # a Latin-1 folder name: hashing its str for the package name raised UnicodeEncodeError
    d = Path(os.fsdecode(os.fsencode(tmp_path) + b"/strat\xff dir"))
    d.mkdir()
    (d / "myhelpers.py").write_text("QTY = 3\n")
    (d / "mine.py").write_text(_STRATEGY_USING.format(imports="from .myhelpers import QTY"))
    cls = config_from_mapping({"id": "x", "instruments": [1], "strategy": "mine.py:Mine"},
                              str(d / "x.yaml")).strategy_class()  # (its YAML beside it)
    assert sys.modules[cls.__module__].QTY == 3


def test_a_file_that_is_not_utf8_is_reported_and_the_others_load(tmp_path: Path) -> None:
    # A comment with "café" saved as Latin-1 ended `strategy check`, `backtest` and a `run`
    # of the directory in a UnicodeDecodeError traceback, the other strategies not started.
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_bytes(
        b"id: b\nstrategy: sma_cross\n# caf\xe9\ninstruments: [341249]\n")
    # Notepad's "Unicode" is UTF-16 with a byte-order mark: YAML reads it
    (tmp_path / "c.yaml").write_bytes(GOOD.replace("sma_cross_banks", "c").encode("utf-16"))
    configs, errors = load_strategy_dir(tmp_path)
    assert [c.id for c in configs] == ["sma_cross_banks", "c"]
    assert [str(e) for e in errors] == [(
        f"{tmp_path / 'b.yaml'}: not UTF-8 text: byte 0xe9 on line 3 (invalid continuation "
        "byte); save the file as UTF-8")]


def test_a_key_given_twice_is_refused_naming_it_and_its_lines(tmp_path: Path) -> None:
    # YAML keeps the last of a key given twice: this file's limit was dropped without a
    # word, and the strategy traded with no max_position
    f = tmp_path / "twice.yaml"
    f.write_text("id: twice\nstrategy: sma_cross\ninstruments: [341249]\n"
                 "risk: {max_position: 50}\nparams: {quantity: 10}\nrisk: {}\n")
    with pytest.raises(StrategyConfigError) as err:
        load_strategy_file(f)
    assert str(err.value) == (f"{f}: risk: given twice, on lines 4 and 6: YAML keeps the "
                              "second only; keep one")
    f.write_text("id: twice\nstrategy: sma_cross\ninstruments: [341249]\n"
                 "params: {fast: 5, slow: 20, fast: 8}\n")
    with pytest.raises(StrategyConfigError, match="fast: given twice, on line 4: "):
        load_strategy_file(f)
    # a merge key's values are overridden by the mapping's own, as YAML means them to be
    f.write_text("id: twice\nstrategy: sma_cross\ninstruments: [341249]\n"
                 "params: {<<: {fast: 5, slow: 20}, fast: 8}\n")
    assert load_strategy_file(f).params["fast"] == 8


def test_a_module_path_naming_a_file_beside_the_yaml_says_to_name_the_file(
        tmp_path: Path) -> None:
    # `strategy: my_strat:MyStrat` with my_strat.py beside the YAML said only "No module
    # named 'my_strat'"
    (tmp_path / "my_strat.py").write_text("X = 1\n")
    f = tmp_path / "m.yaml"
    f.write_text("id: m\nstrategy: my_strat:MyStrat\ninstruments: [341249]\n")
    with pytest.raises(StrategyConfigError) as err:
        load_strategy_file(f)
    assert str(err.value) == (
        f"{f}: strategy: cannot import module 'my_strat': No module named 'my_strat'; "
        "my_strat.py is a file, not an installed module: strategy: my_strat.py:MyStrat")


def test_a_directory_loads_upper_case_suffixes_and_skips_hidden_files(tmp_path: Path) -> None:
    # A file saved as ``Momentum.YAML`` (Windows, some editors) was skipped without a
    # word, so its strategy never ran; a macOS copy's ``._a.yaml`` (AppleDouble: binary)
    # or an editor's lock ``.#a.yaml`` was reported as a broken strategy.
    (tmp_path / "Momentum.YAML").write_text(GOOD.replace("sma_cross_banks", "momentum"))
    (tmp_path / "b.Yml").write_text(GOOD.replace("sma_cross_banks", "b"))
    (tmp_path / "._Momentum.YAML").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (tmp_path / ".#b.Yml").symlink_to(tmp_path / "no-such-target")
    configs, errors = load_strategy_dir(tmp_path)
    assert sorted(c.id for c in configs) == ["b", "momentum"]
    assert errors == []
