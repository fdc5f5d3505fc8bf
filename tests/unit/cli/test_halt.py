"""``alpha-panda halt`` writes the halt to the brokers the strategy trades on, as its config
says; an id no config has still reaches every broker, and the output says why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.domain.events import KillSwitchSet, StrategyHalted
from alpha_panda.services.logs import open_log
from alpha_panda.stream.topics import REGISTRY
from alpha_panda.testing.pipeline import logged, write_strategy


@pytest.fixture()
def system(tmp_path: Path) -> tuple[Path, Path]:
    """A data directory with a log, and a strategies directory: ``acc`` on paper only,
    ``both`` on paper and zerodha, ``broken`` an invalid file."""
    data, strategies = tmp_path / "data", tmp_path / "strategies"

    async def bootstrap() -> None:
        log = open_log("embedded", data)
        await log.start()
        await log.ensure_topics(REGISTRY.all())
        await log.close()

    asyncio.run(bootstrap())
    write_strategy(strategies, id="acc", tokens=[738561])
    write_strategy(strategies, id="both", tokens=[738561], brokers="[paper, zerodha]")
    (strategies / "broken.yaml").write_text("id: broken\nstrategy: nope\ninstruments: [1]\n")
    return data, strategies


def halt(system: tuple[Path, Path], *args: str) -> tuple[str, dict[str, list[StrategyHalted]]]:
    data, strategies = system
    result = CliRunner().invoke(app, ["halt", *args, "--data-dir", str(data),
                                      "--strategies", str(strategies)])
    assert result.exit_code == 0, result.output
    written = {b: asyncio.run(logged(data, f"{b}.control", StrategyHalted))
               for b in ("paper", "zerodha")}
    return result.stdout, written


def test_a_paper_only_strategy_is_halted_on_paper_only(system: tuple[Path, Path]) -> None:
    out, written = halt(system, "acc")
    assert out == (f"strategy acc on paper: halted (its brokers, from "
                   f"{system[1] / 'acc.yaml'})\n")
    assert [h.strategy_id for h in written["paper"]] == ["acc"] and written["zerodha"] == []
    out, written = halt(system, "acc", "--off")
    assert out.startswith("strategy acc on paper: back in service")
    assert [h.active for h in written["paper"]] == [True, False] and written["zerodha"] == []


def test_a_strategy_on_both_brokers_is_halted_on_both(system: tuple[Path, Path]) -> None:
    out, written = halt(system, "both", "--flatten")
    assert out.startswith("strategy both on paper, zerodha: halted, flattening its positions")
    assert [(h.strategy_id, h.flatten) for h in written["paper"] + written["zerodha"]] == [
        ("both", True), ("both", True)]


def test_an_id_no_config_has_is_halted_everywhere_and_says_why(
        system: tuple[Path, Path]) -> None:
    out, written = halt(system, "nope")
    assert out == ("strategy nope on paper, zerodha: halted (every broker, as which ones it "
                   f"trades on is unknown: no valid strategy 'nope' in {system[1]}; --broker "
                   "names them)\n")
    assert [len(written[b]) for b in ("paper", "zerodha")] == [1, 1]
    out, written = halt(system, "broken")  # an invalid file: its brokers are not to be guessed
    assert out.startswith("strategy broken on paper, zerodha: halted (every broker, as which "
                          f"ones it trades on is unknown: {system[1] / 'broken.yaml'}: ")
    assert [len(written[b]) for b in ("paper", "zerodha")] == [2, 2]


def test_named_brokers_are_taken_as_given(system: tuple[Path, Path]) -> None:
    out, written = halt(system, "acc", "--broker", "zerodha")
    assert out == "strategy acc on zerodha: halted\n"
    assert written["paper"] == [] and [h.strategy_id for h in written["zerodha"]] == ["acc"]


def test_a_strategy_only_in_the_config_store_is_halted_on_its_brokers(
        system: tuple[Path, Path], tmp_path: Path) -> None:
    from alpha_panda.adapters.sql.store import StrategyStore, sqlite_url
    from alpha_panda.strategy.config import load_strategy_file

    other = tmp_path / "elsewhere"
    config = load_strategy_file(write_strategy(other, id="stored", tokens=[738561],
                                               brokers="[zerodha]"))
    url = sqlite_url(tmp_path / "config.db")
    store = StrategyStore(url)
    store.upgrade()
    store.put(config.model_dump(mode="json"))
    store.close()
    data, strategies = system
    result = CliRunner().invoke(app, ["halt", "stored", "--data-dir", str(data),
                                      "--strategies", str(strategies)],
                                env={"ALPHA_PANDA_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("strategy stored on zerodha: halted (its brokers, from ")
    assert asyncio.run(logged(data, "paper.control", StrategyHalted)) == []


def test_without_a_strategies_directory_a_sample_id_is_halted_everywhere(
        system: tuple[Path, Path]) -> None:
    # the running system may trade its own momentum_auto.yaml, routed to zerodha: the
    # samples are no evidence of where it trades
    data, _ = system
    result = CliRunner().invoke(app, ["halt", "momentum_auto", "--data-dir", str(data)],
                                env={"ALPHA_PANDA_STRATEGIES_DIR": None,
                                     "ALPHA_PANDA_DATABASE_URL": None})
    assert result.exit_code == 0, result.output
    assert "on paper, zerodha: halted (every broker" in result.stdout
    assert "no strategies directory given" in result.stdout
    for broker in ("paper", "zerodha"):
        assert [h.strategy_id for h in asyncio.run(logged(data, f"{broker}.control",
                                                          StrategyHalted))] == ["momentum_auto"]


def test_flatten_with_off_is_refused_and_nothing_is_written(system: tuple[Path, Path]) -> None:
    # `halt ID --flatten --off` put the strategy back and closed nothing, as the API's
    # {"active": false, "flatten": true} did: both refuse it now
    data, strategies = system
    result = CliRunner().invoke(app, ["halt", "acc", "--flatten", "--off", "--data-dir",
                                      str(data), "--strategies", str(strategies)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == ("error: --flatten applies only when halting, not with --off: a "
                             "strategy put back in service keeps its positions\n")
    assert [asyncio.run(logged(data, f"{b}.control", StrategyHalted))
            for b in ("paper", "zerodha")] == [[], []]


def test_kill_with_flatten_and_off_is_refused(system: tuple[Path, Path]) -> None:
    data, _ = system
    result = CliRunner().invoke(app, ["kill", "--flatten", "--off", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert result.stderr == ("error: --flatten applies only when setting the kill switch, not "
                             "with --off: releasing it keeps the positions\n")
    assert asyncio.run(logged(data, "paper.control", KillSwitchSet)) == []  # nothing written
    # (the same log takes a plain release)
    assert CliRunner().invoke(app, ["kill", "--off", "--broker", "paper", "--data-dir",
                                    str(data)]).exit_code == 0
    assert [k.active for k in asyncio.run(logged(data, "paper.control", KillSwitchSet))] == [False]


def test_kill_without_a_broker_sets_every_brokers_switch_and_off_needs_one(
        system: tuple[Path, Path]) -> None:
    # with --broker defaulting to paper, a trader typing `alpha-panda kill` in a hurry
    # stopped paper and left the live account trading ("kill switch for paper: on")
    data, _ = system
    result = CliRunner().invoke(app, ["kill", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "kill switch for paper: on\nkill switch for zerodha: on\n"
    switches = {b: [k.active for k in asyncio.run(logged(data, f"{b}.control", KillSwitchSet))]
                for b in ("paper", "zerodha")}
    assert switches == {"paper": [True], "zerodha": [True]}
    # a release names its broker: releasing paper must not release a live switch with it
    bare = CliRunner().invoke(app, ["kill", "--off", "--data-dir", str(data)])
    assert bare.exit_code == 2 and bare.stderr == (
        "error: --off releases the switch of the broker named: --broker paper or --broker "
        "zerodha (both: --broker paper --broker zerodha)\n")
    one = CliRunner().invoke(app, ["kill", "--off", "--broker", "paper", "--data-dir", str(data)])
    assert one.stdout == "kill switch for paper: released\n"
    switches = {b: [k.active for k in asyncio.run(logged(data, f"{b}.control", KillSwitchSet))]
                for b in ("paper", "zerodha")}
    assert switches == {"paper": [True, False], "zerodha": [True]}
    bad = CliRunner().invoke(app, ["kill", "--broker", "nse", "--data-dir", str(data)])
    assert bad.exit_code == 2 and bad.stderr == "error: unknown broker 'nse': paper or zerodha\n"


def test_an_unknown_named_broker_is_refused_before_anything_is_written(
        system: tuple[Path, Path]) -> None:
    # `halt acc --broker paper --broker nse` halted acc on paper (its orders cancelled),
    # then failed on nse: exit 2 and "error: unknown broker", so the trader believed
    # nothing was done while the strategy stood halted on paper
    data, strategies = system
    for args in (["--broker", "paper", "--broker", "nse"], ["--off", "--broker", "paper",
                                                            "--broker", "nse"]):
        result = CliRunner().invoke(app, ["halt", "acc", *args, "--data-dir", str(data),
                                          "--strategies", str(strategies)])
        assert [asyncio.run(logged(data, f"{b}.control", StrategyHalted))
                for b in ("paper", "zerodha")] == [[], []]
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr == "error: unknown broker 'nse': paper or zerodha\n"
    # a broker named twice is halted there once, as kill's --broker is
    out, written = halt(system, "acc", "--broker", "paper", "--broker", "paper")
    assert out == "strategy acc on paper: halted\n"
    assert [h.strategy_id for h in written["paper"]] == ["acc"] and written["zerodha"] == []
