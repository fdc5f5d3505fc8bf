"""``alpha-panda strategy check`` and the run-start check of instruments on the simulator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.domain.events import MarketTick, OrderFilled, OrderSubmitted
from alpha_panda.domain.values import OrderType, Side
from alpha_panda.services.strategy_configs import load_strategies
from alpha_panda.settings import Settings
from alpha_panda.strategy.config import load_strategy_file
from alpha_panda.strategy.runner import StrategyRunner

SAMPLES = Path(__file__).resolve().parents[3] / "alpha_panda" / "sample_strategies"
NOT_SIMULATED = ("not among the simulator's instruments: no tick reaches this strategy with "
                 "--feed sim (fine for a Kite instrument token with --feed kite)")


def check(path: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["strategy", "check", str(path)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    directory = tmp_path / "strategies"
    shutil.copytree(SAMPLES, directory)
    return directory


def test_a_copied_id_makes_both_files_invalid_and_check_fail(samples: Path) -> None:
    (samples / "e_dupid.yaml").write_text(
        "id: sma_cross_banks\nstrategy: sma_cross\ninstruments: [738561]\n")
    code, out, err = check(samples)
    assert code == 1
    assert "sma_cross_banks" not in out  # neither file runs as sma_cross_banks
    assert out.count("ok       ") == 6
    new, original = samples / "e_dupid.yaml", samples / "sma_cross_banks.yaml"
    tail = "none of these files runs until each has its own id"
    assert err.splitlines() == [
        f"invalid  {new}: id: duplicate strategy id 'sma_cross_banks' (also in {original}): {tail}",
        f"invalid  {original}: id: duplicate strategy id 'sma_cross_banks' (also in {new}): {tail}",
    ]


def test_fast_above_slow_is_invalid(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("id: s\nstrategy: sma_cross\ninstruments: [738561]\n"
                 "params: {fast: 30, slow: 10}\n")
    code, out, err = check(f)
    assert (code, out) == (1, "")
    assert err == f"invalid  {f}: params: fast (30) must be smaller than slow (10)\n"


def test_account_limits_in_a_strategy_file_are_refused_not_ignored(tmp_path: Path) -> None:
    # The account's limits are read at the account's level only: in a strategy's risk:
    # section they did nothing. A backtest with account_daily_loss: 10000 (₹100) and
    # account_daily_loss_flatten: true made 1,006 fills and lost ₹31,674.40, never stopped.
    f = tmp_path / "s.yaml"
    f.write_text("id: s\nstrategy: sma_cross\ninstruments: [738561]\n"
                 "risk: {account_daily_loss: 10000, account_daily_loss_flatten: true, "
                 "orders_per_day: 3, max_position: 5}\n")
    code, out, err = check(f)
    assert (code, out) == (1, "")
    assert err == (
        f"invalid  {f}: risk: ['account_daily_loss', 'account_daily_loss_flatten', "
        "'orders_per_day'] limit the whole account, not one strategy: set them in "
        "ALPHA_PANDA_RISK, e.g. '{\"global\": {\"account_daily_loss\": 10000}}'\n")


def test_a_token_the_simulator_lacks_is_a_warning_not_an_error(tmp_path: Path) -> None:
    f = tmp_path / "live.yaml"
    f.write_text("id: live\nstrategy: sma_cross\ninstruments: [738561, 123, 456]\n")
    code, out, err = check(f)
    assert code == 0
    assert out == f"ok       {f}: live (sma_cross, 3 instruments)\n"
    assert err == f"warning  {f}: instruments: 123, 456 {NOT_SIMULATED}\n"


def test_the_samples_check_clean(samples: Path) -> None:
    code, out, err = check(samples)
    assert (code, err, out.count("ok       ")) == (0, "", 7)


def test_run_on_the_simulator_warns_of_tokens_it_never_ticks(tmp_path: Path) -> None:
    # (where every run and service loads its strategies, the config store's rows too)
    (tmp_path / "live.yaml").write_text(
        "id: live\nstrategy: sma_cross\ninstruments: [738561, 123]\n")
    (tmp_path / "sim.yaml").write_text("id: sim\nstrategy: sma_cross\ninstruments: [738561]\n")
    with capture_logs() as logs:
        load_strategies(Settings(strategies_dir=tmp_path))
    assert logs == [{
        "event": "strategy.instruments_not_simulated", "log_level": "warning",
        "strategy": "live", "source": str(tmp_path / "live.yaml"), "instruments": [123],
        "detail": NOT_SIMULATED,
    }]
    # a simulator narrowed to some instruments: the others never tick either
    narrowed = Settings(strategies_dir=tmp_path, simulator={"instruments": [341249]})
    with capture_logs() as logs:
        load_strategies(narrowed)
    assert [(e["strategy"], e["instruments"]) for e in logs] == [
        ("live", [738561, 123]), ("sim", [738561])]


def test_a_book_or_volume_model_a_market_order_at_latency_0_does_not_get_is_a_warning(
        tmp_path: Path) -> None:
    # A market order at latency 0 fills at its signal's tick, which the signal carries no
    # book or volume of: the depth model and volume_participation pass it by.
    f = tmp_path / "deep.yaml"
    f.write_text("id: deep\nstrategy: sma_cross\ninstruments: [738561]\n"
                 "execution: {slippage_model: depth, volume_participation: 0.1}\n")
    code, out, err = check(f)
    assert (code, out) == (0, f"ok       {f}: deep (sma_cross, 1 instruments)\n")
    assert err.startswith(f"warning  {f}: execution: with latency_ms: 0 a market order fills ")
    assert "slippage_model: depth and volume_participation apply to orders that meet" in err
    with capture_logs() as logs:
        load_strategies(Settings(strategies_dir=tmp_path))
    assert [(e["event"], e["strategy"]) for e in logs] == [
        ("strategy.execution_not_modelled", "deep")]
    # after a latency the order meets the book of the tick it reaches: nothing to say
    f.write_text("id: deep\nstrategy: sma_cross\ninstruments: [738561]\n"
                 "execution: {slippage_model: depth, latency_ms: 50}\n")
    assert check(f) == (0, f"ok       {f}: deep (sma_cross, 1 instruments)\n", "")


def test_a_file_that_is_not_utf8_is_invalid_not_a_traceback(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_bytes(b"# \xa3 caf\xe9\nid: s\nstrategy: sma_cross\ninstruments: [738561]\n")
    code, out, err = check(f)
    assert (code, out) == (1, "")
    assert err == (f"invalid  {f}: not UTF-8 text: byte 0xa3 on line 1 (invalid start byte); "
                   "save the file as UTF-8\n")


def test_new_into_a_directory_it_cannot_make_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "ticks.csv").write_text("timestamp,instrument_token,last_price\n")
    for where, error in [
            ("ticks.csv", "error: --dir TMP/ticks.csv is a file, not a directory\n"),
            ("ticks.csv/s", ("error: --dir TMP/ticks.csv/s: cannot write TMP/ticks.csv/s: "
                             "Not a directory\n"))]:
        result = CliRunner().invoke(app, ["strategy", "new", "mine", "--dir",
                                          str(tmp_path / where)])
        assert result.exit_code == 2
        assert result.stderr == error.replace("TMP", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ticks.csv"]


def test_the_strategys_code_given_as_its_file_says_which_file_to_give(tmp_path: Path) -> None:
    # `strategy new mine` writes mine.py and mine.yaml; `backtest --strategy mine.py` said
    # 'invalid YAML: expected '<document start>', but found '<scalar>' in "<unicode string>"'
    assert CliRunner().invoke(app, ["strategy", "new", "mine", "--dir", str(tmp_path)]
                              ).exit_code == 0
    code, out, err = check(tmp_path / "mine.py")
    assert (code, out) == (1, "")
    assert err == (f"invalid  {tmp_path / 'mine.py'}: a strategy's code, not its settings: "
                   f"give {tmp_path / 'mine.yaml'}\n")
    # a tick file: YAML's error names the file, line and column
    ticks = tmp_path / "ticks.csv"
    ticks.write_text('"timestamp","instrument_token","last_price"\n')
    code, out, err = check(ticks)
    assert code == 1
    assert err.splitlines() == [
        (f"invalid  {ticks}: invalid YAML (a strategy file is .yaml or .yml): expected "
         "'<document start>', but found ','"),
        f'  in "{ticks}", line 1, column 12']


def test_a_directory_with_no_strategy_file_fails_the_check(tmp_path: Path) -> None:
    # it printed nothing and exited 0, as if every file had passed (the files were one
    # directory further down, or named .txt)
    (tmp_path / "prod").mkdir()
    (tmp_path / "notes.txt").write_text("id: x\n")
    code, out, err = check(tmp_path)
    assert (code, out) == (1, "")
    assert err == f"invalid  {tmp_path}: no strategy files (*.yaml, *.yml) in it\n"


def test_a_file_switched_off_is_said_to_be(tmp_path: Path) -> None:
    # "ok" alone read as a strategy that runs
    f = tmp_path / "paused.yaml"
    f.write_text("id: paused\nstrategy: sma_cross\ninstruments: [738561]\nenabled: false\n")
    code, out, _ = check(f)
    assert (code, out) == (0, (f"ok       {f}: paused (sma_cross, 1 instruments; enabled: "
                               "false, so run leaves it out)\n"))


def test_the_templates_exit_on_its_way_is_not_cancelled_by_it(tmp_path: Path) -> None:
    # With a latency (or on Kite) its market sell is open a while before it fills; the
    # template cancelled every open order while the price stayed under its average, its
    # own exit among them: sell, cancel, sell again... and it stayed long (a backtest of
    # 20,000 ticks at latency_ms: 50 made 14 fills of 638 signals, 623 orders cancelled).
    assert CliRunner().invoke(app, ["strategy", "new", "mine", "--dir", str(tmp_path)]
                              ).exit_code == 0
    spec = tmp_path / "mine.yaml"
    spec.write_text(spec.read_text().replace("period: 20", "period: 3"))
    runner = StrategyRunner([load_strategy_file(spec)])
    token = 738561

    def at(price: int) -> None:
        runner.process(MarketTick(instrument_token=token, last_price=price, ts=0))

    def order(oid: str, side: Side) -> OrderSubmitted:
        return OrderSubmitted(order_id=oid, signal_id=f"s-{oid}", strategy_id="mine",
                              instrument_token=token, side=side, quantity=1,
                              order_type=OrderType.MARKET)

    def fill(oid: str, side: Side, price: int) -> None:
        runner.on_fill(OrderFilled(order_id=oid, fill_id=f"f-{oid}", strategy_id="mine",
                                   instrument_token=token, side=side, quantity=1, price=price,
                                   cumulative_quantity=1, leaves_quantity=0,
                                   average_price=price))

    for price in (100, 101, 103):  # above its average on the third: buys 1
        at(price)
    runner.on_order_submitted(order("buy", Side.BUY))
    fill("buy", Side.BUY, 103)
    at(90)  # under it: sells 1
    assert runner.position("mine", token) == 0
    runner.on_order_submitted(order("sell", Side.SELL))  # open, not filled yet
    at(89)
    assert runner.take_cancels() == []
    fill("sell", Side.SELL, 89)
    # a buy still open when the price falls under the average is cancelled, as it says
    at(120)  # buys again
    runner.on_order_submitted(order("buy2", Side.BUY))
    at(80)
    assert [o.order_id for _, o in runner.take_cancels()] == ["buy2"]


@pytest.mark.parametrize("name", ["none", "true", "off", "side", "context", "signal"])
def test_strategy_new_writes_a_strategy_that_checks_and_runs_whatever_its_name(
        tmp_path: Path, name: str) -> None:
    # `strategy new none` wrote `class None(Strategy)` (a SyntaxError), `strategy new off`
    # an `id: off` YAML reads as false; `strategy new side` a class Side hiding the Side
    # its code compares with
    assert CliRunner().invoke(app, ["strategy", "new", name, "--dir", str(tmp_path)]
                              ).exit_code == 0
    spec = tmp_path / f"{name}.yaml"
    code, _, err = check(spec)
    assert code == 0, err
    spec.write_text(spec.read_text().replace("period: 20", "period: 3"))
    runner = StrategyRunner([load_strategy_file(spec)])
    assert runner.statuses()[0].id == name
    for k, price in enumerate((100, 101, 103, 90, 80)):
        runner.process(MarketTick(instrument_token=738561, last_price=price, ts=k))
        if k == 2:
            runner.on_order_submitted(OrderSubmitted(
                order_id="b", signal_id="s", strategy_id=name, instrument_token=738561,
                side=Side.BUY, quantity=1, order_type=OrderType.MARKET))
    assert runner.statuses()[0].state == "ACTIVE", runner.statuses()[0].error
    assert [o.order_id for _, o in runner.take_cancels()] == ["b"]
