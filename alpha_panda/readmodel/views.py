"""Read-model documents (msgspec structs, JSON in the cache)."""

from __future__ import annotations

import msgspec

from alpha_panda.domain.values import Broker

MAX_ORDERS = 500  # the read model keeps the latest orders (never dropping an open one) and signals
MAX_SIGNALS = 500


class PositionView(msgspec.Struct, kw_only=True):
    strategy_id: str
    instrument_token: int
    quantity: int
    average_price: int
    last_price: int
    realized: int
    unrealized: int
    charges: int
    tradingsymbol: str | None = None
    product: str = "CNC"
    day_pnl: int | None = None  # net P&L of the market's current IST day (None: not written)


class StrategyPnlView(msgspec.Struct, kw_only=True):
    strategy_id: str
    realized: int
    unrealized: int
    charges: int
    cash: int | None  # None: a live account's strategy (the cash is the account's, Kite's)
    gross_exposure: int
    open_positions: int
    fills: int
    equity: int | None = None  # cash + marked value of open positions (ledger.equity)
    day_pnl: int | None = None


class DayPnlView(msgspec.Struct, kw_only=True):
    day: str  # ISO date (IST)
    pnl: int  # the account's net P&L of the day
    strategies: dict[str, int] = {}  # each strategy's that traded or held that day


class PortfolioView(msgspec.Struct, kw_only=True):
    broker: str
    as_of: int  # ns, event time of the last event applied
    cash: int | None  # None: a live account's funds, not read from the broker yet
    realized: int
    unrealized: int
    charges: int
    gross_exposure: int
    open_positions: int
    fills: int
    strategies: list[StrategyPnlView] = []
    equity_curve: list[tuple[int, int]] = []  # (ts ns, equity paise), bounded
    # the account's capital at each point of the curve (empty: written by a projector
    # before it was kept); a change of it between points is money added or withdrawn
    curve_capital: list[int] = []
    equity: int | None = None  # cash + marked value of open positions; None: API derives it
    day: str | None = None  # the market's current IST day (ISO date), which day_pnl is of
    day_pnl: int | None = None
    days: list[DayPnlView] = []  # P&L by day, oldest first, the current day's exact
    # A live account's cash is the broker's: when it last reported it (None: not yet)
    funds_from_broker: bool = False
    funds_at: int | None = None


OPEN_STATUSES = frozenset({"SUBMITTED", "PARTIALLY_FILLED"})  # an order that may still fill


class OrderView(msgspec.Struct, kw_only=True):
    order_id: str
    strategy_id: str
    instrument_token: int
    side: str
    quantity: int
    order_type: str
    status: str  # SUBMITTED, PARTIALLY_FILLED, FILLED, REJECTED, CANCELLED
    filled_quantity: int = 0
    average_price: int = 0
    limit_price: int | None = None
    trigger_price: int | None = None
    charges: int = 0
    reason: str | None = None
    ts: int = 0
    updated_ts: int = 0
    product: str = ""  # CNC, MIS or NRML ("" until its OrderSubmitted is read)
    validity: str = ""
    parent_order_id: str | None = None  # a bracket leg's entry order
    # whose: the strategy's signal, or the system's (bracket, squareoff, flatten)
    origin: str = "signal"
    # The latest cancel asked for (by ``cancel_requested_by``, at event time
    # ``cancel_requested_ts``), and why the engine could not carry it out, if it could not.
    cancel_requested_ts: int | None = None
    cancel_requested_by: str = ""
    cancel_refused: str | None = None


class SignalView(msgspec.Struct, kw_only=True):
    signal_id: str
    strategy_id: str
    instrument_token: int
    side: str
    quantity: int
    order_type: str
    status: str  # VALIDATED or REJECTED
    reason_code: str | None = None
    message: str | None = None
    reason: str = ""
    ts: int = 0


class StrategyView(msgspec.Struct, kw_only=True):
    id: str
    strategy: str
    instruments: list[int]
    brokers: list[str]
    params: dict[str, object]
    status: str  # ACTIVE, FAILED (taken out of service), DISABLED
    error: str | None = None
    signals: int = 0
    cancels_ignored: int = 0
    dropped_after_exit: int = 0
    exit_at: str | None = None  # "15:15": from then it is kept flat
    source: str = ""


class KillSwitchView(msgspec.Struct, kw_only=True):
    """A broker's kill switch as its risk manager applies it (from ``{broker}.control``)."""

    broker: str
    active: bool
    flatten: bool = False
    set_at: int | None = None  # event time (ns) of the last switch event


def key(broker: Broker | str, name: str) -> str:
    """Cache key of a broker-scoped document: ``paper:portfolio``."""
    return f"{Broker(broker).value}:{name}"


STRATEGIES_KEY = "system:strategies"
