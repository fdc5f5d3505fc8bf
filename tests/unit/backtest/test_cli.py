"""``alpha-panda backtest`` and ``alpha-panda strategy`` as a user runs them."""

from __future__ import annotations

import html
import json
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from alpha_panda.backtest.engine import run_backtest
from alpha_panda.cli import backtest, strategy, ticks
from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.marketdata.files import generate_random_walk, load_ticks, write_ticks
from alpha_panda.strategy.base import Context, Strategy, StrategyParams
from alpha_panda.strategy.config import load_strategy_file

app = typer.Typer()
backtest.register(app)
app.add_typer(strategy.app, name="strategy")
app.add_typer(ticks.app, name="ticks")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("bt")
    data = d / "ticks.csv"
    write_ticks(data, generate_random_walk(20_000, [738561, 341249], seed=4))
    spec = d / "sma.yaml"
    spec.write_text("id: sma\nstrategy: sma_cross\ninstruments: [738561, 341249]\n"
                    "params: {fast: 5, slow: 20, quantity: 3}\n")
    return spec, data


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_json_prints_exactly_one_object_and_is_deterministic(files: tuple[Path, Path]) -> None:
    spec, data = files
    code, out, _ = run("backtest", "--strategy", str(spec), "--data", str(data), "--json")
    assert code == 0
    summary = json.loads(out)  # the whole of stdout is one JSON object
    for key in ("ticks", "fills", "round_trips", "realized_pnl", "unrealized_pnl", "charges",
                "load_s", "elapsed_s", "ticks_per_s"):
        assert key in summary
    assert summary["ticks"] == 20_000 and summary["fills"] > 0
    _, again, _ = run("backtest", "--strategy", str(spec), "--data", str(data), "--json")
    strip = ("load_s", "elapsed_s", "ticks_per_s")
    assert {k: v for k, v in json.loads(again).items() if k not in strip} == {
        k: v for k, v in summary.items() if k not in strip}


def test_flags_override_execution(files: tuple[Path, Path]) -> None:
    spec, data = files
    _, out, _ = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                    "--no-costs", "--slippage-bps", "10")
    summary = json.loads(out)
    assert summary["charges"] == "0.00"
    _, plain, _ = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                      "--no-costs")
    assert json.loads(plain)["realized_pnl"] != summary["realized_pnl"]  # slippage costs


def test_report_is_offline_html_and_byte_identical(files: tuple[Path, Path], tmp_path: Path) -> None:
    spec, data = files
    pages = []
    for name in ("a.html", "b.html"):
        code, _, err = run("backtest", "--strategy", str(spec), "--data", str(data),
                           "--report", str(tmp_path / name), "--quiet")
        assert code == 0 and "report written" in err
        pages.append((tmp_path / name).read_bytes())
    assert pages[0] == pages[1]
    page = pages[0].decode()
    # equity, drawdown, and the trades on each instrument traded
    assert page.startswith("<!doctype html>") and page.count("<svg") == 4
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    assert "Trades on HDFCBANK (341249)" in page and "Trades on ICICIBANK (1270529)" not in page
    assert page.count("<h2>Trades on ") == 2
    # what made the money, position by position, and each strategy's figures in the summary
    assert "<h2>Positions</h2>" in page and "<td>HDFCBANK</td><td>CNC</td>" in page
    assert "sma: fills " in page and "net_pnl " in page


def test_grid_ranks_every_combination(files: tuple[Path, Path]) -> None:
    spec, data = files
    code, out, _ = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                       "--grid", "fast=3,5", "--grid", "slow=10,20", "--quiet")
    assert code == 0
    rows = json.loads(out)["grid"]
    assert sorted((r["params"]["fast"], r["params"]["slow"]) for r in rows) == [
        (3, 10), (3, 20), (5, 10), (5, 20)]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    from decimal import Decimal
    nets = [Decimal(r["net_pnl"]) for r in rows]
    assert nets == sorted(nets, reverse=True)



def test_a_value_given_twice_in_a_grid_runs_once(files: tuple[Path, Path]) -> None:
    # fast=5,5 ran the same backtest twice and ranked it against itself
    spec, data = files
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                         "--grid", "fast=5,3,5", "--grid", "slow=20", "--quiet")
    assert code == 0, err
    assert sorted(r["params"]["fast"] for r in json.loads(out)["grid"]) == [3, 5]
    assert "warning: --grid fast: 5 given more than once; each combination runs once" in err
    from alpha_panda.backtest.grid import parse_grid

    # first-seen order kept; values of different kinds stay apart (1 is not true)
    assert parse_grid(["fast=5,3,5", "flag=1,true,1", "slow=20,20"]) == {
        "fast": [5, 3], "flag": [1, True], "slow": [20]}
    # the same name given twice adds its values, instead of the second replacing the first
    assert parse_grid(["fast=5", "fast=10,5"]) == {"fast": [5, 10]}


@pytest.mark.parametrize("spec", ["fast=,", "fast= ", " =3"])
def test_a_grid_spec_without_a_name_or_a_value_is_an_error_naming_it(
        files: tuple[Path, Path], spec: str) -> None:
    # "fast=," swept nothing: "none of its 0 combination(s) is valid (each skipped above)"
    # with nothing above
    code, out, err = run("backtest", "--strategy", str(files[0]), "--data", str(files[1]),
                         "--grid", spec, "--quiet")
    assert (code, out) == (2, "")
    assert err == f"error: --grid: {spec}: expected NAME=V1,V2,...\n"


def test_grid_values_that_validate_alike_run_once(files: tuple[Path, Path]) -> None:
    # 5 and 5.0 are two values to the parser, one to the strategy's validated params
    spec, data = files
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                         "--grid", "fast=5,5.0,3", "--grid", "slow=20", "--quiet")
    assert code == 0, err
    assert sorted(r["params"]["fast"] for r in json.loads(out)["grid"]) == [3, 5]
    assert ("warning: --grid fast=5.0,slow=20 is a combination already in the sweep (the same "
            "values, written differently); it runs once") in err


def test_a_grid_with_a_report_reports_the_best_combination(files: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    # it wrote nothing and exited 0
    spec, data = files
    page = tmp_path / "best.html"
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                         "--grid", "fast=3,5", "--grid", "slow=10,20", "--quiet",
                         "--report", str(page))
    best = json.loads(out)["grid"][0]
    combination = f"fast={best['params']['fast']}, slow={best['params']['slow']}"
    assert code == 0 and f"report (the best combination: {combination}) written" in err
    assert f"(the best combination: {combination})</title>" in page.read_text()
    assert f"net_pnl {best['strategies']['sma']['net_pnl']}" in page.read_text()


class CrashAt(Strategy):
    """Raises on its first tick when ``period`` is 3; else never trades."""

    class Params(StrategyParams):
        period: int = 5

    params: Params

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        if self.params.period == 3:
            raise ZeroDivisionError("bad maths")
        return [ctx.buy(1)] if ctx.filled() == 0 and not ctx.pending() else None


def test_a_grid_combination_that_raises_is_ranked_last_and_exits_1(
        files: tuple[Path, Path], tmp_path: Path) -> None:
    # the combination whose strategy raised made no fills, so its net P&L of 0.00 ranked it
    # first, above every combination that ran and lost, with no word of its failure, exit 0
    # (and --report reported it as the best)
    _, data = files
    spec = tmp_path / "crash_at.yaml"
    spec.write_text(f"id: crash_at\nstrategy: {__name__}:CrashAt\ninstruments: [738561]\n"
                    "params: {period: 5}\n")
    page = tmp_path / "best.html"
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                         "--grid", "period=3,5", "--quiet", "--report", str(page))
    rows = json.loads(out)["grid"]
    assert [(r["params"]["period"], r["strategies_failed"]) for r in rows] == [
        (5, []), (3, ["crash_at"])]
    assert Decimal(rows[0]["net_pnl"]) < 0  # a loss, still ranked above the failure
    assert code == 1
    assert ("error: --grid period=3: the strategy failed and was taken out of service (its "
            "error is above); ranked last") in err
    assert "(the best combination: period=5)" in page.read_text()
    code, table, err = run("backtest", "--strategy", str(spec), "--data", str(data),
                           "--grid", "period=3,5", "--quiet")
    assert code == 1 and "failed" in table


def test_errors_go_to_stderr_with_the_file_and_field(files: tuple[Path, Path], tmp_path: Path) -> None:
    _, data = files
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nstrategy: sma_cross\ninstruments: [1]\nparams: {fast: 50}\n")
    code, out, err = run("backtest", "--strategy", str(bad), "--data", str(data), "--json")
    assert code == 2 and out == "" and f"{bad}: params" in err
    code, _, err = run("backtest", "--strategy", str(files[0]), "--data", str(tmp_path / "no.csv"))
    assert code == 2 and "no such tick file" in err
    (tmp_path / "dataset.parquet").mkdir()  # (a Parquet dataset: "no such tick file" of it)
    code, _, err = run("backtest", "--strategy", str(files[0]), "--data",
                       str(tmp_path / "dataset.parquet"))
    assert code == 2 and "dataset.parquet: a directory, not a tick file" in err
    code, out, err = run("backtest", "--strategy", str(files[0]), "--data", str(data),
                         "--grid", "fast=3,4", "--grid", "slow=2")
    assert code == 2 and out == ""
    assert "skipped fast=3, slow=2: params: fast (3) must be smaller than slow (2)" in err
    assert ("error: --grid: none of its 2 combination(s) is valid for the strategy (each "
            "skipped above, with its reason)") in err


def test_a_grid_skips_invalid_combinations_and_runs_the_rest(files: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    spec, data = files
    page = tmp_path / "best.html"
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                         "--grid", "fast=5,40,3", "--grid", "slow=30", "--quiet",
                         "--report", str(page))
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(r["params"]["fast"] for r in doc["grid"]) == [3, 5]
    assert doc["skipped"] == [{"params": {"fast": 40, "slow": 30},
                               "reason": "params: fast (40) must be smaller than slow (30)"}]
    assert "skipped fast=40, slow=30: params: fast (40) must be smaller than slow (30)" in err
    best = doc["grid"][0]["params"]
    assert f"report (the best combination: fast={best['fast']}, slow=30) written" in err
    assert page.exists()
    # the table says so too
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data),
                         "--grid", "fast=5,40", "--grid", "slow=30", "--quiet")
    assert code == 0 and "1 invalid combination(s) skipped" in out
    assert "skipped fast=40, slow=30" in err


def test_strategy_new_writes_a_template_that_loads_and_trades(tmp_path: Path,
                                                               files: tuple[Path, Path]) -> None:
    code, out, _ = run("strategy", "new", "my_idea", "--dir", str(tmp_path))
    assert code == 0 and (tmp_path / "my_idea.py").exists()
    code, out, _ = run("strategy", "check", str(tmp_path / "my_idea.yaml"))
    assert code == 0 and "ok" in out
    code, out, _ = run("backtest", "--strategy", str(tmp_path / "my_idea.yaml"),
                       "--data", str(files[1]), "--json")
    assert code == 0 and json.loads(out)["fills"] > 0
    code, _, err = run("strategy", "new", "my_idea", "--dir", str(tmp_path))
    assert code == 2 and "exists" in err


def test_the_templates_limit_order_works_when_uncommented(tmp_path: Path,
                                                         files: tuple[Path, Path]) -> None:
    # The commented limit order uses OrderType (imported by the template, exported by
    # alpha_panda.strategy) and ctx.tick_size(): uncommented, it loads and trades, and no
    # order is off the exchange's price grid.
    assert run("strategy", "new", "limits", "--dir", str(tmp_path))[0] == 0
    module = tmp_path / "limits.py"
    lines = module.read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.strip() == "# t = ctx.tick_size()")
    for k in range(start, start + 3):
        indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
        assert lines[k].lstrip().startswith("# ")
        lines[k] = indent + lines[k].lstrip()[2:]
    module.write_text("\n".join(lines) + "\n")
    assert run("strategy", "check", str(tmp_path / "limits.yaml"))[0] == 0
    code, out, _ = run("backtest", "--strategy", str(tmp_path / "limits.yaml"),
                       "--data", str(files[1]), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["fills"] > 0
    assert "TICK_SIZE" not in summary["rejections"]
    # It never sells what has not filled: a buy still resting when the price drops is
    # cancelled, and only the filled quantity is sold (never short; a CNC sell of more than
    # is held is rejected).
    assert "CNC_SHORT" not in summary["rejections"]
    result = run_backtest(load_strategy_file(tmp_path / "limits.yaml"), load_ticks(files[1]))
    assert result.summary["orders_cancelled"] > 0
    held: dict[int, int] = {}
    for f in result.fills:
        held[f.instrument_token] = held.get(f.instrument_token, 0) + f.quantity * f.side.sign
        assert held[f.instrument_token] >= 0, f


def test_strategy_check_reports_broken_files(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("id: b\nstrategy: nope\ninstruments: [1]\n")
    code, _, err = run("strategy", "check", str(tmp_path))
    assert code == 1 and "unknown strategy 'nope'" in err


def test_the_cli_applies_the_live_risk_settings(files: tuple[Path, Path], tmp_path: Path) -> None:
    _, data = files
    huge = tmp_path / "huge.yaml"  # 5,000 x ~₹1,300 is over the ₹50 lakh fat-finger default
    huge.write_text("id: huge\nstrategy: sma_cross\ninstruments: [738561]\n"
                    "params: {fast: 5, slow: 20, quantity: 5000}\n")
    code, out, _ = run("backtest", "--strategy", str(huge), "--data", str(data), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["fills"] == 0
    assert summary["rejections"] == {"FAT_FINGER": summary["signals"]} and summary["signals"] > 0


def test_rejections_come_with_the_first_message_of_each_reason(
        files: tuple[Path, Path], tmp_path: Path) -> None:
    _, data = files
    huge = tmp_path / "huge.yaml"
    huge.write_text("id: huge\nstrategy: sma_cross\ninstruments: [738561]\n"
                    "params: {fast: 5, slow: 20, quantity: 5000}\n")
    code, out, _ = run("backtest", "--strategy", str(huge), "--data", str(data), "--json")
    summary = json.loads(out)
    assert list(summary["rejections"]) == ["FAT_FINGER"]  # the counts, as before
    message = summary["rejection_messages"]["FAT_FINGER"]
    assert list(summary["rejection_messages"]) == ["FAT_FINGER"]
    assert message.startswith("notional ") and "fat-finger limit" in message
    code, text, _ = run("backtest", "--strategy", str(huge), "--data", str(data),
                        "--report", str(tmp_path / "r.html"))
    assert code == 0 and "rejection_messages" in " ".join(text.split())
    assert "fat-finger limit" in " ".join(text.split())
    page = (tmp_path / "r.html").read_text()
    assert f"FAT_FINGER: {html.escape(message)}" in page
    assert "the message of its first rejection" in page


class Crash(Strategy):
    """Raises on its first tick."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        raise ZeroDivisionError("bad maths")


EXPECTED = {"round_trips": 612, "gross": 0.300654, "exposure": 0.740251}  # gross P&L +2.55


def test_a_failed_strategy_is_listed_and_exits_1(files: tuple[Path, Path], tmp_path: Path) -> None:
    _, data = files
    crash = tmp_path / "crash.yaml"
    crash.write_text(f"id: crash\nstrategy: {__name__}:Crash\ninstruments: [738561]\n")
    code, out, err = run("backtest", "--strategy", str(crash), "--data", str(data), "--json")
    assert code == 1 and "strategies failed and were taken out of service: crash" in err
    assert json.loads(out)["strategies_failed"] == ["crash"]


def test_summary_explains_net_and_gross_win_rate_and_daily_sharpe(files: tuple[Path, Path]) -> None:
    spec, data = files  # 20,000 ticks over ~20 s of one day
    code, out, _ = run("backtest", "--strategy", str(spec), "--data", str(data), "--json")
    s = json.loads(out)
    assert code == 0
    assert (s["round_trips"], s["win_rate"], s["gross_win_rate"]) == (EXPECTED["round_trips"],
                                                                      0.0, EXPECTED["gross"])
    assert s["sharpe"] is None  # one trading day: no daily returns to annualise
    assert s["exposure"] == EXPECTED["exposure"]
    _, table, _ = run("backtest", "--strategy", str(spec), "--data", str(data))
    assert "sharpe" in table and "n/a" in table


def test_help_says_what_each_figure_is() -> None:
    code, out, _ = run("backtest", "--help")
    text = " ".join(out.split())
    assert code == 0
    for words in ("win_rate: share of round trips whose P&L net of their charges",
                  "gross_win_rate: share of round trips whose P&L before charges",
                  "DAILY equity returns", "fewer than 2 trading days", "Exit status"):
        assert words.replace(" ", "") in text.replace(" ", "").replace("│", "")


def test_the_templates_first_signal_is_on_the_tick_its_average_first_has_a_value(
        tmp_path: Path) -> None:
    assert run("strategy", "new", "first", "--dir", str(tmp_path))[0] == 0
    config = tmp_path / "first.yaml"
    config.write_text(config.read_text().replace("period: 20", "period: 3"))
    ticks = tmp_path / "three.csv"  # rising: above the average on the third
    ticks.write_text('"timestamp","instrument_token","last_price","volume"\n' + "".join(
        f"{1_764_042_300_000_000_000 + k * 10**9},738561,{1300 + k}.00,{10 + k}\n"
        for k in range(3)))
    code, out, err = run("backtest", "--strategy", str(config), "--data", str(ticks), "--json")
    assert code == 0, err
    assert json.loads(out)["signals"] == 1  # the first tick with an average: it counts


def test_instruments_the_file_never_ticks_are_warned_about(files: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    # a token typo read as "0 fills" with nothing said: the strategy simply never saw a tick
    _, data = files
    spec = tmp_path / "typo.yaml"
    spec.write_text("id: typo\nstrategy: sma_cross\ninstruments: [738561, 3412490]\n"
                    "params: {fast: 5, slow: 20, quantity: 3}\n")
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json")
    assert code == 0 and json.loads(out)["fills"] > 0  # the other instrument trades
    assert (f"warning: {spec}: instruments: 3412490 has no tick in {data}: "
            "this strategy never trades it") in " ".join(err.split())
    spec.write_text("id: typo\nstrategy: sma_cross\ninstruments: [738561, 341249]\n"
                    "params: {fast: 5, slow: 20, quantity: 3}\n")
    _, _, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json")
    assert "warning" not in err


def test_a_depth_model_a_market_order_at_latency_0_does_not_get_is_warned_about(
        files: tuple[Path, Path], tmp_path: Path) -> None:
    _, data = files
    spec = tmp_path / "deep.yaml"
    spec.write_text("id: deep\nstrategy: sma_cross\ninstruments: [738561]\n"
                    "params: {fast: 5, slow: 20, quantity: 3}\n"
                    "execution: {slippage_model: depth}\n")
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json")
    assert code == 0 and json.loads(out)["fills"] > 0
    assert (f"warning: {spec}: execution: with latency_ms: 0 a market order fills at its "
            "signal's tick at once") in " ".join(err.split())
    _, _, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                    "--latency-ms", "50")
    assert "warning" not in err


def test_a_file_of_a_year_the_holiday_calendar_does_not_list_is_warned_about(
        tmp_path: Path) -> None:
    # generated from 29 December 2023 (the calendar lists 2024-2026): both commands say so
    data = tmp_path / "old.csv"
    code, out, err = run("ticks", "generate", str(data), "--ticks", "2000", "--days", "2",
                         "--start", "2023-12-29")
    assert code == 0 and "2023-12-29 to 2024-01-01" in out
    assert "warning: NSE's holidays of 2023 are not in" in " ".join(err.split())
    spec = tmp_path / "sma.yaml"
    spec.write_text("id: sma\nstrategy: sma_cross\ninstruments: [738561]\n"
                    "params: {fast: 5, slow: 20, quantity: 3}\n")
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json")
    assert code == 0 and json.loads(out)["ticks"] == 2000
    assert (f"warning: {data}: NSE's holidays of 2023 are not in "
            "alpha_panda/data/nse_holidays.json") in " ".join(err.split())
    code, _, err = run("ticks", "generate", str(data), "--ticks", "2000", "--start", "2024-01-19")
    assert code == 0 and "warning" not in err


def test_risk_limits_for_a_broker_that_does_not_exist_are_refused(
        files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A misspelt broker's limits limited nothing, silently: with
    # {"brokers": {"zerodah": {"max_order_qty": 1}}} an order of 5,000 shares went through
    # and preflight said "limits valid".
    strategy_file, data = files
    monkeypatch.setenv("ALPHA_PANDA_RISK", '{"brokers": {"zerodah": {"max_order_qty": 1}}}')
    code, out, err = run("backtest", "--strategy", str(strategy_file), "--data", str(data),
                         "--json")
    assert code == 2 and out == ""
    assert "risk.brokers: unknown broker(s) ['zerodah']; known: ['paper', 'zerodha']" in err


def test_win_rates_are_null_without_a_round_trip(files: tuple[Path, Path], tmp_path: Path) -> None:
    # A strategy that bought and held closed no trip: its win rate was 0.0, read as "every
    # trade lost", where there was no trade to judge (as sharpe is null without two days).
    _, data = files
    (tmp_path / "once.py").write_text(
        "from alpha_panda.strategy import Strategy\n\n\nclass Once(Strategy):\n"
        "    def on_tick(self, tick, ctx):\n"
        "        return [ctx.buy(1)] if ctx.position() == 0 else None\n")
    hold = tmp_path / "hold.yaml"
    hold.write_text("id: hold\nstrategy: once.py:Once\ninstruments: [738561]\n")
    code, out, _ = run("backtest", "--strategy", str(hold), "--data", str(data), "--json")
    s = json.loads(out)
    assert code == 0 and (s["fills"], s["round_trips"]) == (1, 0)
    assert (s["win_rate"], s["gross_win_rate"]) == (None, None)
    _, table, _ = run("backtest", "--strategy", str(hold), "--data", str(data))
    assert "│ win_rate           │ n/a" in table


def test_a_report_that_cannot_be_written_is_an_error_not_a_traceback(
        files: tuple[Path, Path], tmp_path: Path) -> None:
    spec, data = files
    # a directory that does not exist: refused before the backtest runs
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                         "--report", str(tmp_path / "reprots" / "r.html"))
    assert (code, out) == (2, "")
    assert err == f"error: --report {tmp_path / 'reprots' / 'r.html'}: no directory " \
                  f"{tmp_path / 'reprots'}\n"
    # a directory: refused before the backtest runs too (it was found only when the page
    # was written, after the run, and the summary was never printed: the figures lost)
    (tmp_path / "r.html").mkdir()
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json",
                         "--report", str(tmp_path / "r.html"))
    assert (code, out) == (2, "")
    assert err == (f"error: --report {tmp_path / 'r.html'}: is a directory; give a file "
                   "name, such as report.html\n")


@pytest.mark.parametrize("cash", ["0", "-100"])
def test_a_starting_cash_of_nothing_is_a_bad_setting(
        files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, cash: str) -> None:
    # it was taken: with 0 the summary's max_drawdown_pct was 20245.98 (a drawdown of
    # ₹730.88 over no capital), its initial_equity 0.00, and the command exited 0
    spec, data = files
    monkeypatch.setenv("ALPHA_PANDA_PAPER__INITIAL_CASH", cash)
    code, out, err = run("backtest", "--strategy", str(spec), "--data", str(data), "--json")
    assert (code, out) == (2, "")
    assert err == ("error: bad setting: ALPHA_PANDA_PAPER__INITIAL_CASH: Input should be "
                   f"greater than 0 (got {cash!r})\n")


def test_a_file_switched_off_is_backtested_all_the_same(
        files: tuple[Path, Path], tmp_path: Path) -> None:
    # it gave a summary of nothing: 0 fills, initial_equity 0.00, exit 0
    spec, data = files
    off = tmp_path / "off.yaml"
    off.write_text(spec.read_text() + "enabled: false\n")
    code, out, err = run("backtest", "--strategy", str(off), "--data", str(data), "--json")
    _, on, _ = run("backtest", "--strategy", str(spec), "--data", str(data), "--json")
    assert code == 0
    assert err == f"note: {off}: enabled: false (run leaves it out); backtested all the same\n"
    got, expected = json.loads(out), json.loads(on)
    assert got["fills"] == expected["fills"] > 0
    assert got["net_pnl"] == expected["net_pnl"] and got["initial_equity"] == "1000000.00"
