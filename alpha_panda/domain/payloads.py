"""Every payload type: what the events on the log carry, one ``msgspec.Struct`` each.

``Envelope`` (``events``) wraps each of them on the log; ``PAYLOAD_TYPES`` maps the envelope's
``type`` to its payload class. Prices and money are int paise (see ``values``). Times are int
nanoseconds since the Unix epoch, UTC. Kept apart from ``events`` (the envelope, ids and the
codec), which re-exports every name here: code imports them from ``events``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal

import msgspec

from alpha_panda.domain.values import OrderType, Product, Side, Validity


class Payload(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """Base of every payload. ``EVENT_TYPE`` is the envelope ``type`` it travels under."""

    EVENT_TYPE: ClassVar[str] = ""


# ---------------------------------------------------------------------------- market data


class DepthLevel(msgspec.Struct, frozen=True, array_like=True, gc=False):
    price: int
    quantity: int
    orders: int = 0


class Depth(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Five levels each side, best first (Kite's full mode)."""

    buy: tuple[DepthLevel, ...] = ()
    sell: tuple[DepthLevel, ...] = ()


class MarketTick(Payload, frozen=True, kw_only=True, gc=False):
    """One trade print / quote update for an instrument.

    ``volume`` is the quantity traded since the instrument's previous tick (0: nothing, or
    not known), whatever the feed: the live feed takes it from the change in Kite's
    cumulative day volume (Kite repeats the last trade's quantity on every quote, traded
    or not), the simulator and generated files give each tick's own. ``last_quantity`` is
    the same quantity where a feed sets it (Kite, simulator), else 0; readers take
    ``last_quantity or volume``: tick files exported before these meant this carry the
    day's cumulative volume in ``volume`` and, in ``last_quantity``, the simulator's tick
    quantity or Kite's last trade quantity, and read as they did.
    """

    EVENT_TYPE: ClassVar[str] = "market_tick"
    instrument_token: int
    # Checked as records decode: a tick at 0 (or below) is no price, and on the log it
    # filled market orders at ₹0 and marked positions down to nothing (an exit of a held
    # position sold at ₹0: -₹74,225 realized); such a record is dead-lettered instead.
    last_price: Annotated[int, msgspec.Meta(gt=0)]
    ts: int
    volume: int = 0
    last_quantity: int = 0
    average_price: int | None = None
    open: int | None = None
    high: int | None = None
    low: int | None = None
    close: int | None = None
    change: float | None = None
    oi: int | None = None
    buy_quantity: int | None = None
    sell_quantity: int | None = None
    depth: Depth | None = None
    tradable: bool = True
    price_e4: int | None = None
    """Exact last price in 1/10,000 rupee, set only where the venue quotes finer than a paisa
    (currency derivatives, CDS/BCD); ``last_price`` is then rounded half-even to paise."""


# ---------------------------------------------------------------------------- signals


class Signal(Payload, frozen=True, kw_only=True, gc=False):
    """A strategy's intent to trade. Prices in paise; ``price_hint`` is the last price seen."""

    EVENT_TYPE: ClassVar[str] = "signal_generated"
    strategy_id: str
    instrument_token: int
    side: Side
    quantity: int
    order_type: OrderType = OrderType.MARKET
    limit_price: int | None = None
    trigger_price: int | None = None
    validity: Validity = Validity.DAY
    product: Product = Product.CNC
    take_profit: int | None = None
    stop_loss: int | None = None
    price_hint: int | None = None
    reason: str = ""
    # Set by the runner on a signal that only takes the strategy's position (as it knows
    # it: its first broker's, with what it signalled) toward flat: each broker's risk
    # manager passes it only if it reduces the position there (``REDUCE_ONLY``), so that an
    # exit never opens one (a broker that missed the entry, an exit the venue made first).
    reduce_only: bool = False
    # The strategy's intended position in the instrument after this signal (set by the
    # runner), and, on the copy for a broker other than its first, that first broker (its
    # book follows that one's fills): there the risk manager keeps the position within the
    # intent (``EXCEEDS_INTENT``), so entries the first refused do not pile up on another.
    target: int | None = None
    follows: str = ""
    # Set by the runner on an entry it places again smaller for an exit (``replaces``: the
    # resting entry's order id on the strategy's first broker, cancelled in its place;
    # ``replaced_leaves``: that entry's unfilled quantity then). Should the entry fill
    # instead of being cancelled, this one is cancelled: the two must not both buy.
    replaces: str = ""
    replaced_leaves: int = 0


class SignalValidated(Payload, frozen=True, kw_only=True, gc=False):
    """``flatten``: one of the kill switch's flatten orders (made by the risk manager, not by
    a strategy, whatever its ``reason`` says): the engines place it while the switch is on.
    ``signal`` is what the engines place: a copy for a broker other than the strategy's
    first is sized down to the strategy's intended position there (``message`` says so)."""

    EVENT_TYPE: ClassVar[str] = "signal_validated"
    signal: Signal  # as passed: on a broker it follows another on, sized to the intent
    signal_id: str
    flatten: bool = False
    message: str = ""  # what the risk manager changed, if anything (the size, and why)


class SignalRejected(Payload, frozen=True, kw_only=True, gc=False):
    """A risk rejection: ``reason_code`` is machine-readable (e.g. ``MAX_POSITION``)."""

    EVENT_TYPE: ClassVar[str] = "signal_rejected"
    signal: Signal
    signal_id: str
    reason_code: str
    message: str
    # one of the risk manager's own flatten orders (as ``SignalValidated.flatten``): not a
    # strategy's, so no strategy's intended position moves back with its rejection
    flatten: bool = False


# ---------------------------------------------------------------------------- orders


class Charges(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Itemised charges of one fill, in paise.

    ``dp`` is the depository charge (GST included) of selling a scrip from holdings, once
    per scrip per day: Zerodha debits it on the ledger, not on the contract note. It came
    after the other items; events written before it decode with 0.

    ``auto_squareoff`` is Zerodha's call-and-trade charge (GST included) on an intraday
    position it squared off at the cut-off, per square-off order of at most 30,000 shares,
    on the square-off's fill; negative on a paper square-off that undoes an earlier one (a
    fill read after the cut-off tick but dated before it). Events written before it decode
    with 0.

    A paper CNC fill that nets off against an earlier same-day CNC fill of the other side
    also carries the difference between the intraday and the delivery charges of that
    earlier fill, so some of its items may be negative (``execution.netting``).
    """

    brokerage: int = 0
    stt: int = 0
    exchange_txn: int = 0
    sebi: int = 0
    stamp_duty: int = 0
    gst: int = 0
    dp: int = 0
    auto_squareoff: int = 0

    @property
    def total(self) -> int:
        return (self.brokerage + self.stt + self.exchange_txn + self.sebi + self.stamp_duty
                + self.gst + self.dp + self.auto_squareoff)


NO_CHARGES: Final = Charges()


Origin = Literal["signal", "bracket", "squareoff", "flatten"]
"""Whose order: a strategy's signal, or one the system placed for it: a bracket's exit leg,
the MIS square-off, the kill switch's flatten. Only a signal's order moved the strategy's
intended position when it was signalled; the others move it when they fill."""


class OrderSubmitted(Payload, frozen=True, kw_only=True, gc=False):
    EVENT_TYPE: ClassVar[str] = "order_submitted"
    order_id: str
    signal_id: str
    strategy_id: str
    instrument_token: int
    side: Side
    quantity: int
    order_type: OrderType
    limit_price: int | None = None
    trigger_price: int | None = None
    product: Product = Product.CNC
    validity: Validity = Validity.DAY
    tag: str = ""
    broker_order_id: str | None = None
    ts: int = 0  # event time (ns) of this order event; set by the engine that produced it
    parent_order_id: str | None = None  # bracket legs point at their entry order
    origin: Origin = "signal"
    take_profit: int | None = None  # a bracket entry's exits (paper only)
    stop_loss: int | None = None
    # From this event time on the venue fills it no more (paper: the close of its DAY,
    # the 15:20 cut-off of an MIS order, whichever comes first): the strategy runner
    # counts what is unfilled then as ended, not waiting for the venue's OrderCancelled,
    # which comes only with the instrument's next tick (the next day's first, after a close)
    expires_ns: int | None = None


class OrderFilled(Payload, frozen=True, kw_only=True, gc=False):
    """One execution. Partial fills carry cumulative and leaves quantity."""

    EVENT_TYPE: ClassVar[str] = "order_filled"
    order_id: str
    fill_id: str
    strategy_id: str
    instrument_token: int
    side: Side
    quantity: int
    price: int
    cumulative_quantity: int
    leaves_quantity: int
    average_price: int
    product: Product = Product.CNC
    charges: Charges = NO_CHARGES
    broker_order_id: str | None = None
    ts: int = 0  # event time (ns) of this order event; set by the engine that produced it
    # Whose order (``Origin``): one the system placed moves the strategy's position
    # without its asking.
    origin: Origin = "signal"


class OrderRejected(Payload, frozen=True, kw_only=True, gc=False):
    EVENT_TYPE: ClassVar[str] = "order_rejected"
    order_id: str
    strategy_id: str
    instrument_token: int
    side: Side
    quantity: int
    reason_code: str
    message: str
    broker_order_id: str | None = None
    ts: int = 0  # event time (ns) of this order event; set by the engine that produced it
    origin: Origin = "signal"
    # What was asked, for an order rejected before it was ever submitted (None: not known,
    # e.g. an event written before these were added).
    order_type: OrderType | None = None
    limit_price: int | None = None
    trigger_price: int | None = None
    product: Product | None = None


class OrderCancelled(Payload, frozen=True, kw_only=True, gc=False):
    """``reason``: ``user`` (the trader's cancel), ``strategy`` (its strategy's, ``ctx.cancel``),
    ``kill_switch``, ``strategy_halted``, ``ioc``, ``expired``, ``squareoff``, ``oco`` (other
    bracket leg filled), ``exit`` (a bracket leg the strategy's exit took the position below:
    cut to what is held, placed again for the rest), ``reduce_only`` (the strategy's exit, once
    a bracket leg closed what it was to sell), ``broker``."""

    EVENT_TYPE: ClassVar[str] = "order_cancelled"
    order_id: str
    strategy_id: str
    instrument_token: int
    side: Side
    filled_quantity: int
    leaves_quantity: int
    reason: str
    broker_order_id: str | None = None
    ts: int = 0  # event time (ns) of this order event; set by the engine that produced it
    origin: Origin = "signal"


# ---------------------------------------------------------------------------- portfolio


class PnlSnapshot(Payload, frozen=True, kw_only=True, gc=False):
    """P&L of one strategy (or the whole account when ``strategy_id`` is None), in paise."""

    EVENT_TYPE: ClassVar[str] = "pnl_snapshot"
    broker: str
    strategy_id: str | None
    realized: int
    unrealized: int
    charges: int
    cash: int | None  # None: the account's funds are not known (a live account's, not read yet)
    gross_exposure: int
    open_positions: int
    fills: int
    # Cash plus the marked value of the open positions (None in snapshots written before
    # it was added): the dashboard's equity curve is read from the account's snapshots.
    equity: int | None = None


class FundsReported(Payload, frozen=True, kw_only=True, gc=False):
    """A live account's funds as its broker reported them, read at the envelope's ``ts``
    (wall clock), in paise: Kite's ``margins("equity")``. On ``{broker}.control``, so the
    portfolio projector rebuilds the account's cash from the log, never asking Kite.

    ``cash`` is Kite's ``available.cash``: the account's cash balance at the start of the
    day plus the day's pay-ins. The day's trades do not move it (they are settled after);
    the projector adds the cash flows of the fills since that IST day began. (Kite's
    ``net`` and ``live_balance`` are margins: they count collateral, and an MIS buy uses only
    its margin of them, where the ledger pays the whole price.)"""

    EVENT_TYPE: ClassVar[str] = "funds_reported"
    cash: int
    opening_balance: int | None = None
    segment: str = "equity"


# ---------------------------------------------------------------------------- operator controls


class KillSwitchSet(Payload, frozen=True, kw_only=True, gc=False):
    """An operator switched a broker's kill switch; with ``flatten``, close every position.

    ``market_ts``: event time of the latest tick on the log when it was set (None: no tick
    yet, or an event written before the field): the market's time of the switch, at which
    open orders are cancelled and the flatten orders go in."""

    EVENT_TYPE: ClassVar[str] = "kill_switch_set"
    active: bool
    flatten: bool = False
    requested_by: str = ""
    market_ts: int | None = None
    reason: str = ""  # why, when the system set it (the account's daily-loss stop)


class StrategyHalted(Payload, frozen=True, kw_only=True, gc=False):
    """A strategy taken out of service: the trading engines cancel its open orders.

    Made by the strategy runner when the strategy raised (or broke its contract), at the
    tick of ``ts``: its positions are left as they are, for the trader to decide. Or by the
    trader (``requested_by``: ``api``, ``cli``), at the market's time ``market_ts``: the
    runner stops acting on its signals and the risk manager rejects any still on their way
    (``STRATEGY_HALTED``); with ``flatten`` the risk manager closes its positions at market
    (one order per instrument and product); ``active=False`` puts it back in service."""

    EVENT_TYPE: ClassVar[str] = "strategy_halted"
    strategy_id: str
    error: str = ""
    requested_by: str = ""  # "": the runner (it raised); else the trader, by this means
    active: bool = True
    flatten: bool = False
    market_ts: int | None = None
    # The market time the halt lapses at (None: when the trader says): the runner and the
    # risk manager put the strategy back at their first tick at or after it. A daily-loss
    # stop's (``requested_by`` ``risk:daily_loss``) is the next IST day's start.
    until: int | None = None

    @property
    def by_trader(self) -> bool:
        return bool(self.requested_by)


class CancelRequested(Payload, frozen=True, kw_only=True, gc=False):
    """The trader (``reason`` ``user``) or a strategy (``strategy``: ``ctx.cancel``) asked
    to cancel one open order (``order_id``). On ``{broker}.control``: the trading engine
    cancels what is left of it (with that reason) as the market stood at ``market_ts``
    (the latest tick on the log when asked, or the tick the strategy saw; None: no tick
    yet), so a rebuild cancels it at the same point; an order filled or closed by then is
    left as it is."""

    EVENT_TYPE: ClassVar[str] = "cancel_requested"
    order_id: str
    requested_by: str = ""
    market_ts: int | None = None
    reason: Literal["user", "strategy"] = "user"


class CancelRefused(Payload, frozen=True, kw_only=True, gc=False):
    """A ``CancelRequested`` the trading engine could not carry out (``message`` says why:
    the order is closed already, unknown, or the broker refused), on the same
    ``{broker}.control`` topic, so the trader who asked is told instead of left waiting.
    The order itself is as its own events say."""

    EVENT_TYPE: ClassVar[str] = "cancel_refused"
    order_id: str
    requested_by: str = ""
    reason: Literal["user", "strategy"] = "user"
    message: str


# ---------------------------------------------------------------------------- dead letters


class DeadLetter(Payload, frozen=True, kw_only=True, gc=False):
    """A message a consumer gave up on, with everything needed to replay it."""

    EVENT_TYPE: ClassVar[str] = "dead_letter"
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    error_class: str
    error: str
    stack: str
    attempts: int
    service: str
    failed_at: int
    replay: str


PAYLOAD_TYPES: Final[dict[str, type[Payload]]] = {
    cls.EVENT_TYPE: cls
    for cls in (
        MarketTick,
        Signal,
        SignalValidated,
        SignalRejected,
        OrderSubmitted,
        OrderFilled,
        OrderRejected,
        OrderCancelled,
        PnlSnapshot,
        FundsReported,
        KillSwitchSet,
        StrategyHalted,
        CancelRequested,
        CancelRefused,
        DeadLetter,
    )
}
