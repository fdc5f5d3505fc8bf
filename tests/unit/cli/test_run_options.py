"""`alpha-panda run` and `service` refuse option values they cannot run with, at once and in
one line, before anything starts (a negative --speed used to hang the replay forever, an
infinite one to crash the feed and a port past 65535 to end in a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app


@pytest.mark.parametrize("speed", ["-1", "0", "nan", "inf", "-inf"])
@pytest.mark.parametrize("command", ["run", "service"])
def test_a_speed_that_is_not_a_positive_number_is_refused(
        tmp_path: Path, command: str, speed: str) -> None:
    ticks = tmp_path / "ticks.csv"
    ticks.write_text("timestamp,instrument_token,last_price\n1775447100000000000,738561,1289\n")
    args = ([command, "--feed", f"replay:{ticks}", "--speed", speed, "--duration", "5"]
            + (["--no-api", "--data-dir", str(tmp_path / "data"), "--exit-at-end"]
               if command == "run" else ["feed", "--log", "memory"]))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--speed" in result.output and "above 0" in result.output
    if command == "run":  # refused before anything started (a service on memory has no dir)
        assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("option", "value"), [("--port", "99999"), ("--port", "-1"),
                                               ("--duration", "-5")])
@pytest.mark.parametrize("command", ["run", "service"])
def test_a_port_or_duration_out_of_range_is_refused(
        tmp_path: Path, command: str, option: str, value: str) -> None:
    args = (["run", "--data-dir", str(tmp_path / "data")] if command == "run"
            else ["service", "api" if option == "--port" else "feed", "--log", "memory"])
    result = CliRunner().invoke(app, [*args, option, value])
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
    if command == "run":
        assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("feed", [None, "sim", "kite"])
@pytest.mark.parametrize("command", ["run", "service"])
def test_speed_without_a_replay_is_refused(
        tmp_path: Path, command: str, feed: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    # `run --speed 10` (the sim feed, the default) ran at the simulator's own rate: the
    # option was silently ignored
    monkeypatch.delenv("ALPHA_PANDA_FEED", raising=False)
    args = ([command, "--speed", "10", "--duration", "5"] + (["--feed", feed] if feed else [])
            + (["--no-api", "--data-dir", str(tmp_path / "data")]
               if command == "run" else ["feed", "--log", "memory"]))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [(
        f"error: --speed paces a replay (--feed replay:FILE), not the {feed or 'sim'} feed; "
        "leave it out (the simulator's pace is ALPHA_PANDA_SIMULATOR__RATE ticks a second)")]
    if command == "run":
        assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("option", "value", "error"), [
    ("--feed", "replay:TMP/tick.csv", "replay file TMP/tick.csv does not exist"),
    ("--feed", "replay:TMP", "replay file TMP is a directory, not a tick file"),
    ("--strategies", "TMP/s.yaml",
     "strategies directory TMP/s.yaml is a file: give the directory of strategy files (TMP)"),
    ("--strategies", "TMP/strategeis", "strategies directory TMP/strategeis does not exist"),
    ("--feed", "replay:TMP/bad.csv",
     "TMP/bad.csv, row 1 (line 2), column 'last_price': not a number: 'abc'"),
])
@pytest.mark.parametrize("command", ["run", "service"])
def test_a_mistyped_feed_or_strategies_leaves_nothing_in_the_data_directory(
        tmp_path: Path, command: str, option: str, value: str, error: str) -> None:
    # they were found once the run had taken its lock and opened the log: a new data
    # directory was left with an empty log.sqlite (and `--strategies FILE` was said not
    # to exist)
    (tmp_path / "s.yaml").write_text("id: s\nstrategy: sma_cross\ninstruments: [738561]\n")
    (tmp_path / "bad.csv").write_text(
        "timestamp,instrument_token,last_price\n1775447100000000000,738561,abc\n")
    data = tmp_path / "data"
    args = ([command] + (["feed"] if command == "service" else ["--no-api"])
            + ["--data-dir", str(data), "--duration", "5",
               option, value.replace("TMP", str(tmp_path))])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {error.replace('TMP', str(tmp_path))}\n"
    assert not data.exists()


def test_the_count_of_invalid_strategy_files_is_of_files(tmp_path: Path) -> None:
    # a file with a bad parameter that also claims another file's id has two errors: the
    # run said "3 strategy file(s) invalid" of its 2 files
    ticks = tmp_path / "ticks.csv"
    ticks.write_text("timestamp,instrument_token,last_price\n1775447100000000000,738561,1289\n")
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "a.yaml").write_text("id: a\nstrategy: sma_cross\ninstruments: [738561]\n")
    (strategies / "b.yaml").write_text(
        "id: a\nstrategy: sma_cross\ninstruments: [738561]\nparams: {fast: x}\n")
    result = CliRunner().invoke(app, [
        "run", "--feed", f"replay:{ticks}", "--strategies", str(strategies), "--no-api",
        "--exit-at-end", "--data-dir", str(tmp_path / "data"), "--log", "memory"])
    assert result.exit_code == 1, result.output
    assert "error: 2 strategy file(s) invalid, so not run: " in result.stderr


def test_a_replay_of_a_file_already_on_the_log_says_it_replayed_nothing(
        tmp_path: Path) -> None:
    # the second replay of a file on one data directory publishes nothing and prints the
    # first run's figures: with the strategy's parameters changed in between, the same
    # figures came back without a word
    from alpha_panda.marketdata.files import generate_random_walk, write_ticks

    ticks = tmp_path / "ticks.csv"
    write_ticks(ticks, generate_random_walk(2000, [738561], seed=3))
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "s.yaml").write_text("id: s\nstrategy: sma_cross\ninstruments: [738561]\n"
                                       "params: {fast: 5, slow: 20}\n")
    args = ["run", "--feed", f"replay:{ticks}", "--strategies", str(strategies), "--no-api",
            "--exit-at-end", "--json", "--data-dir", str(tmp_path / "data")]
    note = (f"note: 2,000 of the file's ticks were on the log of {tmp_path / 'data'} from an "
            "earlier run, and were not replayed again")
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["ticks_published"] == 2000 and note not in first.stderr
    (strategies / "s.yaml").write_text("id: s\nstrategy: sma_cross\ninstruments: [738561]\n"
                                       "params: {fast: 3, slow: 10}\n")
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["ticks_published"] == 0 and note in second.stderr


def test_an_empty_api_host_is_refused_as_it_listens_on_every_interface(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ALPHA_PANDA_API__HOST= (left empty in a unit file) bound the API, with its kill
    # switch, cancel and flatten endpoints, to 0.0.0.0 and [::]
    data = tmp_path / "data"
    result = CliRunner().invoke(app, ["run", "--host", "", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --host is empty, which listens on every interface")
    monkeypatch.setenv("ALPHA_PANDA_API__HOST", "")
    result = CliRunner().invoke(app, ["run", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: bad setting: ALPHA_PANDA_API__HOST: empty, which listens on every interface")
    assert not data.exists()
