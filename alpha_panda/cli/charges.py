"""``alpha-panda charges``: Zerodha's brokerage calculator for one buy and one sell.

Register with ``app.command(name="charges")(charges_command)``. ``--json`` prints exactly
one JSON object on stdout with the keys ``turnover, brokerage, stt, exchange_txn, sebi,
stamp_duty, gst, dp, total_charges, gross_pnl, net_pnl``: rupees, as JSON *numbers* with
exactly two decimals (e.g. ``200.62``, ``40000.00``), exact to the paisa. Each charge is
the sum of the buy order's and the sell order's, each rounded to the paisa, but for STT:
each leg is its scrip's only trade of its day, and a day's STT is rounded to the rupee,
half up, as on Zerodha's calculator and contract notes (``CostModel.round_trip``). ``dp`` is the depository charge (GST included) of an equity delivery
sell, taken to be from holdings on a later day; it goes on the ledger, not the contract
note. A CNC buy and sell on the same day is an intraday trade: ``--segment
equity_intraday``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

import typer

from alpha_panda.domain.errors import AlphaPandaError, ValidationError
from alpha_panda.domain.values import to_paise, to_rupees
from alpha_panda.execution.costs import CostModel, RateCards, RoundTrip, Segment

KEYS = (
    "turnover", "brokerage", "stt", "exchange_txn", "sebi", "stamp_duty", "gst", "dp",
    "total_charges", "gross_pnl", "net_pnl",
)


def breakdown(rt: RoundTrip) -> dict[str, int]:
    """The calculator's figures in paise, keyed as in ``--json``."""
    both = (rt.buy, rt.sell)
    return {
        "turnover": rt.turnover,
        "brokerage": sum(c.brokerage for c in both),
        "stt": sum(c.stt for c in both),
        "exchange_txn": sum(c.exchange_txn for c in both),
        "sebi": sum(c.sebi for c in both),
        "stamp_duty": sum(c.stamp_duty for c in both),
        "gst": sum(c.gst for c in both),
        "dp": sum(c.dp for c in both),
        "total_charges": rt.total_charges,
        "gross_pnl": rt.gross_pnl,
        "net_pnl": rt.net_pnl,
    }


def to_json(figures: dict[str, int]) -> str:
    """One JSON object; rupee amounts as numbers with two decimals (exact, no float)."""
    return "{" + ", ".join(f'"{k}": {to_rupees(figures[k])}' for k in KEYS) + "}"


def _price(rupees: str) -> int:
    """A price argument in paise: a rupee amount above zero."""
    paise = to_paise(rupees)
    if paise <= 0:
        raise ValidationError(f"price must be positive, got {rupees!r}")
    return paise


def _arguments(buy: str, sell: str, quantity: int) -> tuple[int, int]:
    """Buy and sell in paise, each argument checked on its own so the error names it."""
    prices = []
    for option, value in (("--buy", buy), ("--sell", sell)):
        try:
            prices.append(_price(value))
        except ValidationError as exc:
            raise ValidationError(f"{option}: {exc}") from exc
    if quantity <= 0:
        raise ValidationError(f"--quantity: must be positive, got {quantity}")
    return prices[0], prices[1]


def _exchange(exchange: str) -> str:
    """(another exchange was said as 'no MCX transaction charge for equity_intraday')"""
    if exchange.upper() not in ("NSE", "BSE"):
        raise ValidationError(f"--exchange: NSE or BSE, got {exchange!r}")
    return exchange.upper()


def charges_command(
    segment: Annotated[Segment, typer.Option(
        "--segment", help="equity_delivery | equity_intraday | futures | options")],
    buy: Annotated[str, typer.Option("--buy", help="buy price in rupees, e.g. 1000.50")],
    sell: Annotated[str, typer.Option("--sell", help="sell price in rupees")],
    quantity: Annotated[int, typer.Option("--quantity", help="shares / units (lots × lot size)")],
    exchange: Annotated[str, typer.Option("--exchange", help="NSE or BSE")] = "NSE",
    on: Annotated[str | None, typer.Option(
        "--on", help="trade date YYYY-MM-DD: the rate card then in force (default: today's)",
    )] = None,
    json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Zerodha's charges and net P&L of buying and selling QUANTITY (brokerage calculator).

    equity_delivery: bought one day, sold from holdings on a later one (DP charge included);
    a CNC buy and sell on the same day is charged as equity_intraday."""
    try:
        buy_paise, sell_paise = _arguments(buy, sell, quantity)
        exchange = _exchange(exchange)
        if on is None:
            model = CostModel.load()
        else:
            try:
                day = date.fromisoformat(on)
            except ValueError:
                raise ValidationError(f"--on: not a date (YYYY-MM-DD): {on!r}") from None
            model = RateCards.load().on(day)
        rt = model.round_trip(Segment(segment), buy_paise, sell_paise, quantity, exchange.upper())
    except AlphaPandaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    figures = breakdown(rt)
    if json:
        typer.echo(to_json(figures))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Zerodha charges ({segment}, {exchange.upper()}, rate card {model.version})")
    table.add_column("item")
    table.add_column("₹", justify="right")
    for key in KEYS:
        table.add_row(key.replace("_", " "), f"{to_rupees(figures[key]):,}")
    breakeven = Decimal(rt.total_charges) / quantity / 100
    table.add_row("points to breakeven", f"{breakeven:.2f}")
    Console().print(table)
