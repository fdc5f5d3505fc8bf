"""Response and request models of the read API (pydantic: they are the OpenAPI schema).

Money and prices are exact rupee decimal strings with two places (``"1234.50"``), made from
the int paise in the cache: a JSON number would invite float rounding in every client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

Rupees = Annotated[
    str,
    Field(
        pattern=r"^-?\d+\.\d{2}$",
        description="Exact amount in rupees, a decimal string with two places (paise).",
        examples=["1234.50"],
    ),
]
OrderStatus = Literal["SUBMITTED", "PARTIALLY_FILLED", "FILLED", "REJECTED", "CANCELLED"]
# a filter: a status, or OPEN (an order that may still fill: submitted or partly filled)
OrderStatusQuery = Literal["OPEN", "SUBMITTED", "PARTIALLY_FILLED", "FILLED", "REJECTED",
                           "CANCELLED"]
SignalStatus = Literal["VALIDATED", "REJECTED"]


def rupees(paise: int) -> str:
    """Exact rupee string for an int amount in paise: ``123450`` → ``"1234.50"``."""
    return format(Decimal(paise).scaleb(-2), "f")


def rupees_or_none(paise: int | None) -> str | None:
    """``rupees`` that lets None through (an order without a limit price)."""
    return None if paise is None else rupees(paise)


def iso_time(ts_ns: int) -> str | None:
    """ISO-8601 UTC time of an int-nanosecond timestamp; None for 0 (never happened)."""
    if ts_ns <= 0:
        return None
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=ns // 1000)
    return moment.isoformat().replace("+00:00", "Z")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class EquityPoint(_Out):
    ts: int = Field(description="Event time, nanoseconds since the Unix epoch (UTC).")
    time: str | None = Field(description="The same instant, ISO-8601 UTC.")
    equity: Rupees
    capital: Rupees | None = Field(
        default=None,
        description="The account's capital at this point (paper: initial_cash per configured "
                    "strategy): equity − capital is the net P&L. A change between points is "
                    "capital added or withdrawn (a strategy added or removed between runs), "
                    "not a gain or a loss. null: not known (an older projector's curve).")


_DAY_PNL = ("Net P&L of the day: today's fills (cash less charges) plus the change in value "
            "of the position since the day began, the quantity carried from earlier days "
            "valued at the previous close (as Kite's Day's P&L). null: not written yet.")


class StrategyPnl(_Out):
    strategy_id: str
    realized: Rupees
    unrealized: Rupees
    charges: Rupees
    net_pnl: Rupees = Field(description="realized + unrealized − charges")
    day_pnl: Rupees | None = Field(description=_DAY_PNL)
    cash: Rupees | None = Field(description=(
        "Paper: the strategy's starting cash plus its fills' cash flows. null on a live "
        "broker: the account's cash is the broker's, not split by strategy."))
    equity: Rupees | None = Field(
        description="cash + marked value of the strategy's open positions; null with cash")
    gross_exposure: Rupees
    open_positions: int
    fills: int


class DayPnl(_Out):
    day: str = Field(description="The IST trading day (ISO date).")
    pnl: Rupees = Field(description="The account's net P&L of that day, as day_pnl was that "
                                    "day: its fills, and the change in value of what was held "
                                    "(the quantity carried into it from the previous close).")
    strategies: dict[str, Rupees] = Field(description="Each strategy's net P&L of that day.")


class Portfolio(_Out):
    """Account summary of one broker. A fresh system (no fills yet) reports zeros."""

    broker: str
    as_of: int = Field(description="Event time of the last event applied, ns (0: none yet).")
    as_of_time: str | None
    cash: Rupees | None = Field(description=(
        "Paper: the starting cash (paper.initial_cash per strategy routed to paper) plus the "
        "fills' cash flows. Zerodha: Kite's available cash of the account (User margins, "
        "equity segment, available.cash: the cash at the day's start plus the day's pay-ins) "
        "plus the cash flows of this system's fills since that day began. null: Kite's funds "
        "have not been read yet (the zerodha engine reads them when it starts): unknown, "
        "never made up."))
    funds: str = Field(description="Where cash comes from, in a few words (the dashboard's note).")
    funds_time: str | None = Field(
        description="When the broker last reported the account's funds (ISO); null: never, or paper.")
    realized: Rupees
    unrealized: Rupees
    charges: Rupees
    net_pnl: Rupees = Field(description="realized + unrealized − charges")
    day: str | None = Field(description="The market's current IST day (ISO date, by event time, "
                                        "not the wall clock): the day of day_pnl.")
    day_pnl: Rupees | None = Field(description=_DAY_PNL)
    market_value: Rupees = Field(description="Σ quantity × last price of open positions (net)")
    equity: Rupees | None = Field(description="cash + market_value; null when cash is")
    gross_exposure: Rupees
    open_positions: int
    fills: int
    strategies: list[StrategyPnl]
    equity_curve: list[EquityPoint]
    days: list[DayPnl] = Field(default=[], description="P&L by day, oldest first (the latest "
                                                        "90 days).")


class Position(_Out):
    strategy_id: str
    instrument_token: int
    symbol: str | None = Field(description="NSE trading symbol when the instrument is known.")
    product: str = Field(description="CNC (delivery) or MIS (intraday): a strategy's two in one "
                                     "instrument are two positions, as Zerodha shows them.")
    quantity: int = Field(description="Signed: positive long, negative short, 0 closed.")
    average_price: Rupees
    last_price: Rupees
    market_value: Rupees = Field(description="quantity × last price")
    realized: Rupees
    unrealized: Rupees
    charges: Rupees
    day_pnl: Rupees | None = Field(description=_DAY_PNL)


class Order(_Out):
    order_id: str
    strategy_id: str
    instrument_token: int
    symbol: str | None
    side: str
    quantity: int
    order_type: str
    product: Annotated[str | None, Field(description="CNC, MIS or NRML")]
    validity: Annotated[str | None, Field(description="DAY or IOC")]
    parent_order_id: Annotated[str | None, Field(
        description="A bracket leg's entry order (its stop or target); None for an entry")]
    origin: Annotated[str, Field(
        description="Who placed it: signal (the strategy), bracket (a bracket's stop or "
                    "target), squareoff (the 15:20 MIS square-off), flatten (the kill "
                    "switch's or a halt's)")]
    status: str
    filled_quantity: int
    average_price: Rupees
    limit_price: Rupees | None
    trigger_price: Rupees | None
    charges: Rupees
    reason: str | None
    ts: int
    time: str | None
    updated_ts: int
    cancel_requested_at: Annotated[int | None, Field(
        description="When the latest cancel of this order was asked (ns since epoch; the "
                    "requested_at of POST .../cancel), None if never")]
    cancel_requested_by: Annotated[str | None, Field(
        description="Who asked: api, cli, or strategy:ID (the strategy's own ctx.cancel)")]
    cancel_refused: Annotated[str | None, Field(
        description="Why the engine could not carry out that cancel (the order filled "
                    "first, the broker refused...); None while it stands or went through")]


class Signal(_Out):
    signal_id: str
    strategy_id: str
    instrument_token: int
    symbol: str | None
    side: str
    quantity: int
    order_type: str
    status: str
    reason_code: str | None = Field(description="Why risk rejected it (e.g. MAX_POSITION).")
    message: str | None = Field(description=(
        "Risk's explanation: of a rejection, or of a validated signal it sized down (a copy "
        "for a broker other than the strategy's first, sized to its intended position)."))
    reason: str = Field(description="The strategy's own reason for the signal.")
    ts: int
    time: str | None



class Strategy(_Out):
    id: str
    strategy: str
    instruments: list[int]
    symbols: list[str | None]
    brokers: list[str]
    params: dict[str, object]
    status: str = Field(description="ACTIVE, HALTED (by the trader: POST .../halt), FAILED "
                                    "(it raised: taken out of service) or DISABLED")
    error: str | None
    signals: int
    cancels_ignored: int = Field(
        0, description="ctx.cancel requests for orders the strategy had not open (ended, or "
                       "not its own): nothing was cancelled")
    exit_at: str | None = Field(
        None, description="IST time from which the runner keeps it flat each day (its file's "
                          "exit_at; 15:15 for product MIS unless set); None: never")
    dropped_after_exit: int = Field(
        0, description="its signals dropped because they would open or add past exit_at")
    source: str


class ComponentHealth(_Out):
    name: str
    state: str
    ready: bool
    detail: str
    lag: int | None
    processed: int
    errors: int


class Health(_Out):
    status: Literal["ok", "ready", "not_ready", "failed"]
    components: list[ComponentHealth]


class KillSwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    broker: str = Field(description="paper or zerodha", examples=["paper"])
    # Strict: "yes", 1 or "on" must not switch trading off (or on) by accident.
    active: StrictBool = Field(description="true stops new orders on that broker; false resumes")
    flatten: Annotated[StrictBool, Field(
        description="also close every open position at market (only with active: true; "
                    "refused with active: false)")] = False


class HaltRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict, as the kill switch's: "yes" or 1 must not halt (or resume) a strategy.
    active: StrictBool = Field(
        True, description="true takes the strategy out of service (its open orders are "
                          "cancelled, its new signals go nowhere); false puts it back")
    flatten: Annotated[StrictBool, Field(
        description="also close its positions at market (only with active: true; "
                    "refused with active: false)")] = False


class HaltState(_Out):
    strategy_id: str
    active: bool
    flatten: bool
    brokers: Annotated[list[str], Field(description="the brokers it was asked on: its own")]
    requested_at: Annotated[int, Field(description="When it was asked (ns since epoch)")]


class CancelState(_Out):
    broker: str
    order_id: str
    strategy_id: str
    status: Annotated[str, Field(description="requested: the engine cancels what is left of "
                                             "the order, or finds it filled first")]
    order_status: Annotated[OrderStatus, Field(description="the order's status when asked")]
    requested_at: Annotated[int, Field(description="When it was asked (ns since epoch)")]


class KillSwitchState(_Out):
    broker: str
    active: bool
    flatten: bool
    set_at: Annotated[
        int | None, Field(description="When it was set (ns since epoch); None: never")
    ] = None
