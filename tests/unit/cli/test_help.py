"""Every option of every command says what it is for and, when left out, what it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.settings import Settings


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if hasattr(group, "commands"):
        return [c for name, sub in group.commands.items() for c in _commands(sub, (*path, name))]
    return [(path, group)]


COMMANDS = _commands(typer.main.get_command(app))
def test_the_walk_finds_the_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"run", "service", "preflight", "kill", "dlq list", "topics list", "charges"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_has_a_description_and_a_default(path: tuple[str, ...], command: Any) -> None:
    undocumented = [p.name for p in command.params if not getattr(p, "help", None)]
    assert undocumented == []
    # typer shows "[default: X]" itself when X is not None; a None default stands for
    # a value from the settings (or "all", "none"): the help must say which.
    unstated = [
        p.name for p in command.params
        if p.default is None and not p.required and not getattr(p, "is_flag", False)
        and "default" not in (p.help or "")
    ]
    assert unstated == []


@pytest.mark.parametrize(
    ("args", "texts"),
    [
        (["preflight"], ["--log", "the log to reach", "--strategies", "the bundled samples",
                         "--port", "the API port that must be free (default: 8000)"]),
        (["run"], ["default: as fast as possible", "default: sim", "default: ./data"]),
    ],
)
def test_help_pages_read_as_a_user_needs(args: list[str], texts: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in texts:
        assert text in result.stdout


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_the_description_wraps_at_the_terminal_width_not_at_the_docstrings(
        path: tuple[str, ...], command: Any) -> None:
    # `halt --help` on an 80-column terminal broke each line of its docstring again,
    # leaving one- and two-word lines ("brokers,", "valid") between full ones
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:")) + 1
    end = next((i for i, line in enumerate(lines) if line.startswith("╭")), len(lines))
    paragraphs: list[list[str]] = [[]]
    for line in lines[start:end]:
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    ragged = [line for para in paragraphs for line in para[:-1] if len(line) < 60]
    assert ragged == []


def test_a_bad_setting_is_one_line_naming_the_variable_when_a_command_reads_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHA_PANDA_SIMULATOR__SESSION_START", "15:19:20")
    monkeypatch.setenv("ALPHA_PANDA_API__PORT", "abc")
    result = CliRunner().invoke(app, ["topics", "list"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [(
        "error: bad setting: ALPHA_PANDA_API__PORT: Input should be a valid integer, unable to "
        "parse string as an integer (got 'abc'); ALPHA_PANDA_SIMULATOR__SESSION_START: expected "
        "an IST time as HH:MM, got '15:19:20'")]
    # --help, and a command that reads no setting, work whatever the environment holds
    assert CliRunner().invoke(app, ["run", "--help"]).exit_code == 0
    charges = CliRunner().invoke(app, ["charges", "--segment", "equity_intraday", "--buy", "100",
                                       "--sell", "101", "--quantity", "10", "--json"])
    assert charges.exit_code == 0 and charges.stdout.startswith("{")


def test_risk_limits_that_are_not_json_are_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The README's ALPHA_PANDA_RISK spans lines; a trailing comma made every command that
    # reads settings (run, backtest, preflight) die with a 30-line pydantic traceback.
    monkeypatch.setenv("ALPHA_PANDA_RISK", '{"global": {"max_order_qty": 500,}}')
    result = CliRunner().invoke(app, ["topics", "list"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [(
        "error: bad setting: ALPHA_PANDA_RISK: not valid JSON: Expecting property name "
        "enclosed in double quotes: line 1 column 34 (char 33)")]


def test_a_log_level_that_is_not_one_is_one_line_naming_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `ALPHA_PANDA_LOG_LEVEL=verbose alpha-panda preflight` (or run, service) ended in a
    # traceback of ConfigurationError, raised where the logging was set up
    monkeypatch.setenv("ALPHA_PANDA_LOG_LEVEL", "verbose")
    result = CliRunner().invoke(app, ["preflight", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [(
        "error: bad setting: ALPHA_PANDA_LOG_LEVEL: expected DEBUG, INFO, WARNING, ERROR or "
        "CRITICAL (got 'verbose')")]
    monkeypatch.setenv("ALPHA_PANDA_LOG_LEVEL", "debug")  # any case, as before
    assert Settings().log_level == "DEBUG"


def test_simulator_tokens_it_does_not_have_are_a_bad_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `preflight` passed them; `run` started, then its feed failed ("services failed, so
    # the run is incomplete: feed: ValueError('simulator: unknown instrument tokens [1]')")
    monkeypatch.setenv("ALPHA_PANDA_SIMULATOR__INSTRUMENTS", "[341249, 1]")
    result = CliRunner().invoke(app, ["preflight", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(
        "error: bad setting: ALPHA_PANDA_SIMULATOR__INSTRUMENTS: tokens the simulator does not "
        "have: 1 (it has 738561, 341249, ")
    monkeypatch.setenv("ALPHA_PANDA_SIMULATOR__INSTRUMENTS", "[341249, 738561]")
    assert Settings().simulator.instruments == [341249, 738561]


SHAPE = 'expected an object of limits, e.g. {"max_position": 100}, got'


@pytest.mark.parametrize(("risk", "error"), [
    ('{"global": 5}', f"risk.global: {SHAPE} 5"),
    ('{"global": null}', f"risk.global: {SHAPE} None"),
    ('{"brokers": ["paper"]}', ("risk.brokers: expected an object of each broker's limits, "
                                "e.g. {\"paper\": {\"max_position\": 100}}, got ['paper']")),
    ('{"brokers": {"paper": 5}}', f"risk.brokers.paper: {SHAPE} 5"),
])
def test_risk_limits_of_the_wrong_shape_are_one_line_naming_the_section(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, risk: str, error: str) -> None:
    # valid JSON of the wrong shape ended preflight, run and backtest in a TypeError
    # traceback ("'int' object is not a mapping")
    monkeypatch.setenv("ALPHA_PANDA_RISK", risk)
    (tmp_path / "s.yaml").write_text("id: s\nstrategy: sma_cross\ninstruments: [738561]\n")
    (tmp_path / "t.csv").write_text(
        "timestamp,instrument_token,last_price\n1775447100000000000,738561,1289\n")
    result = CliRunner().invoke(app, ["backtest", "--strategy", str(tmp_path / "s.yaml"),
                                      "--data", str(tmp_path / "t.csv"), "--json"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: {error}\n"
    result = CliRunner().invoke(app, ["preflight", "--data-dir", str(tmp_path / "data"),
                                      "--port", "0"])
    assert result.exit_code == 1 and "FAIL" in result.stdout
