"""``alpha-panda charges``: the brokerage calculator on the command line."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import typer
from typer.testing import CliRunner

from alpha_panda.cli.charges import KEYS, charges_command

app = typer.Typer()
app.command(name="charges")(charges_command)


@app.command()
def _other() -> None:  # a second command keeps typer from collapsing the app into one command
    """Unused."""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["charges", *args])
    return result.exit_code, result.output


def test_json_prints_exactly_one_object_with_the_calculator_keys() -> None:
    code, out = invoke("--segment", "equity_intraday", "--buy", "1000", "--sell", "1100",
                       "--quantity", "400", "--json")
    assert code == 0
    assert out.count("\n") == 1
    figures = json.loads(out, parse_float=Decimal)
    assert tuple(figures) == KEYS
    # the worked example of test_costs.py: ₹200.62 of charges on ₹40,000 gross
    assert figures["total_charges"] == Decimal("200.62")
    assert figures["net_pnl"] == Decimal("39799.38")
    assert figures["turnover"] == Decimal("840000.00")
    assert str(figures["gross_pnl"]) == "40000.00"  # two decimals, exact
    parts = ("brokerage", "stt", "exchange_txn", "sebi", "stamp_duty", "gst", "dp")
    assert sum(figures[k] for k in parts) == figures["total_charges"]
    assert figures["dp"] == Decimal("0.00")


def test_a_delivery_round_trip_pays_the_dp_charge_on_the_sell() -> None:
    code, out = invoke("--segment", "equity_delivery", "--buy", "1000", "--sell", "1100",
                       "--quantity", "400", "--json")
    assert code == 0
    figures = json.loads(out, parse_float=Decimal)
    # the worked example of test_costs.py: ₹931.42 on the contract notes + ₹15.34 DP
    assert figures["dp"] == Decimal("15.34")
    assert figures["total_charges"] == Decimal("946.76")
    code, out = invoke("--segment", "equity_delivery", "--buy", "1000", "--sell", "1100",
                       "--quantity", "400")
    assert code == 0 and "15.34" in out and "946.76" in out


def test_table_output_and_errors() -> None:
    code, out = invoke("--segment", "options", "--buy", "100", "--sell", "110", "--quantity", "75")
    assert code == 0 and "66.05" in out and "683.95" in out
    code, _ = invoke("--segment", "bogus", "--buy", "1", "--sell", "1", "--quantity", "1")
    assert code == 2
    code, _ = invoke("--segment", "futures", "--buy", "1.001", "--sell", "1", "--quantity", "1")
    assert code == 2  # fractions of a paisa are not a price


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--buy", "-5", "--sell", "10", "--quantity", "100"),
         "error: --buy: price must be positive, got '-5'"),
        (("--buy", "0", "--sell", "10", "--quantity", "100"),
         "error: --buy: price must be positive, got '0'"),
        (("--buy", "5", "--sell", "-1", "--quantity", "100"),
         "error: --sell: price must be positive, got '-1'"),
        (("--buy", "abc", "--sell", "10", "--quantity", "100"),
         "error: --buy: not a rupee amount: 'abc'"),
        (("--buy", "5", "--sell", "10.001", "--quantity", "100"),
         "error: --sell: rupee amount '10.001' has fractions of a paisa"),
        (("--buy", "5", "--sell", "10", "--quantity", "-3"),
         "error: --quantity: must be positive, got -3"),
        # it said "no MCX transaction charge for equity_delivery"
        (("--buy", "5", "--sell", "10", "--quantity", "3", "--exchange", "MCX"),
         "error: --exchange: NSE or BSE, got 'MCX'"),
    ],
)
def test_a_bad_argument_is_named_in_the_error(args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(app, ["charges", "--segment", "equity_delivery", *args])
    assert result.exit_code == 2
    assert result.stderr == message + "\n"


def test_on_a_date_the_card_then_in_force_prices_the_trade() -> None:
    args = ("--segment", "futures", "--buy", "1000", "--sell", "1010", "--quantity", "100",
            "--json")
    figures = {on: json.loads(invoke(*args, "--on", on)[1], parse_float=Decimal)
               for on in ("2025-06-02", "2026-06-01")}
    # futures STT on the sell: 0.02% before the 2026-04-01 card, 0.05% from it (₹20.20
    # and ₹50.50, the day's STT to the rupee, half up)
    assert figures["2025-06-02"]["stt"] == Decimal("20.00")
    assert figures["2026-06-01"]["stt"] == Decimal("51.00")
    code, out = invoke(*args, "--on", "2025-13-01")
    assert code == 2 and "--on: not a date (YYYY-MM-DD): '2025-13-01'" in out


def test_stt_is_rounded_to_the_rupee_as_on_zerodhas_calculator_and_contract_notes() -> None:
    # Zerodha's calculator shows STT ₹3.00 on an intraday sell of 100 @ ₹101 (0.025% of
    # ₹10,100 is ₹2.525): STT is rounded to the rupee, half up, every other item to the paisa
    code, out = invoke("--segment", "equity_intraday", "--buy", "100", "--sell", "101",
                       "--quantity", "100", "--json")
    assert code == 0
    figures = json.loads(out, parse_float=Decimal)
    assert figures["stt"] == Decimal("3.00")
    assert figures["exchange_txn"] == Decimal("0.62") and figures["gst"] == Decimal("1.20")
    assert figures["total_charges"] == Decimal("11.17")
    assert figures["net_pnl"] == Decimal("88.83")
