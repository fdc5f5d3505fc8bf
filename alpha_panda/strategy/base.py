"""What a user writes: a ``Strategy`` with typed ``Params``, and the read-only ``Context``.

A strategy is a small pure class. The runner makes one instance per (strategy, instrument),
so the code is written as if it sees a single instrument's ticks::

    class SmaCross(Strategy):
        class Params(StrategyParams):
            fast: PositiveInt = 10
            slow: PositiveInt = 30
            quantity: PositiveInt = 1

        def setup(self) -> None:
            self.warmup = self.params.slow

        def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
            if ...:
                return [ctx.buy(self.params.quantity, reason="fast above slow")]
            return None

No I/O and no infrastructure imports: the same class runs live and in the backtest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time
from fractions import Fraction
from typing import Any, ClassVar

import msgspec
from pydantic import BaseModel, ConfigDict

from alpha_panda.domain.clock import ist_date, ist_ns
from alpha_panda.domain.events import MarketTick, Origin, Signal
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.config import MIS_SQUAREOFF
from alpha_panda.execution.market import nse_tick_sizes

_DAY_NS = 86_400 * 1_000_000_000


class StrategyParams(BaseModel):
    """Base of every strategy's ``Params``: frozen, unknown keys are errors, and so are
    ``.inf`` and ``.nan`` (a YAML float no period, band or stop can sensibly be)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Bar(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """OHLCV of one instrument over ``[start_ns, end_ns)``; prices in paise."""

    instrument_token: int
    start_ns: int
    end_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    ticks: int


class OpenOrder(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One of the strategy's orders still working at its first broker, as last heard from
    it (``ctx.open_orders()``): placed, and neither filled in full, cancelled nor rejected."""

    order_id: str
    signal_id: str
    instrument_token: int
    side: Side
    quantity: int
    leaves_quantity: int  # not filled yet
    order_type: OrderType
    limit_price: int | None = None
    trigger_price: int | None = None
    parent_order_id: str | None = None  # a bracket's exit leg: its entry order
    # Whose: the strategy's signal, or one the system placed for it (``bracket`` exit legs,
    # both resting until one fills and cancels the other; the ``squareoff``; the kill
    # switch's ``flatten``). Only a signal's order counts in ``pending()``.
    origin: Origin = "signal"
    placed_ns: int = 0  # event time the venue accepted it (before any simulated latency)
    cancel_requested: bool = False  # asked to cancel it (``ctx.cancel``), no answer yet
    product: Product = Product.CNC
    validity: Validity = Validity.DAY
    take_profit: int | None = None  # a bracket entry's exits
    stop_loss: int | None = None


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A strategy's request to cancel one of its open orders (``ctx.cancel``), returned
    among its signals. What is left of the order is cancelled as the market stood at the
    tick (reason ``strategy``); an order filled or closed by then is left as it is."""

    strategy_id: str
    order_id: str


class _Clock:
    """Event time of the tick being processed; one per runner, shared by every context."""

    __slots__ = ("now_ns",)

    def __init__(self) -> None:
        self.now_ns = 0


class _Reference:
    """What the exchange takes an instrument's tick size from, as the runner last saw it:
    the latest tick's previous close (``close``), else the first price of the current IST
    day (the paper exchange's ``reference_price``). One per instrument, shared by every
    strategy trading it; the runner updates it before any handler sees the tick."""

    __slots__ = ("close", "day_end", "day_open")

    def __init__(self) -> None:
        self.close: int | None = None
        self.day_open = 0
        self.day_end = 0  # event time the current IST day ends: the next tick past it rolls

    def new_day(self, ts: int, price: int) -> None:
        self.day_open = price
        self.day_end = ist_ns(ist_date(ts), time(0, 0)) + _DAY_NS

    @property
    def price(self) -> int | None:
        return self.close or self.day_open or None


class _Book:
    """A strategy's own account state, kept by the runner and read through ``Context``."""

    __slots__ = ("average", "by_product", "cash", "clock", "exit_at", "filled", "orders",
                 "positions", "product", "strategy_id")

    def __init__(self, strategy_id: str, cash: int, clock: _Clock | None = None,
                 product: Product = Product.CNC, exit_at: time | None = None) -> None:
        self.strategy_id = strategy_id
        self.positions: dict[int, int] = {}  # intended: moved by signals at once
        self.filled: dict[int, int] = {}  # what the venue filled
        self.by_product: dict[tuple[int, Product], int] = {}  # the same, per product
        # the average price (paise, exact) of what is filled, per token: ``average_price``
        self.average: dict[int, int | Fraction] = {}
        self.orders: dict[str, OpenOrder] = {}  # order id -> the order, while it works
        self.cash = cash
        self.clock = clock or _Clock()
        self.product = product  # of signals that name none: the strategy file's ``product``
        self.exit_at = exit_at  # the strategy file's ``exit_at`` (IST), if any


class Context:
    """Read-only view a strategy gets on every call: its position, orders, cash, the clock.

    ``position`` is the *intended* position: what the strategy's own signals imply,
    corrected when risk or the venue rejects or cancels them. It moves the instant a
    signal is emitted, so a strategy never double-sends while an order is in flight.
    ``filled`` is what the venue has filled, and ``open_orders`` the orders still working
    there (a resting limit order counts in ``position`` but not in ``filled``). Both come
    from the strategy's first broker, as it reports them: in the backtest at once, in the
    pipeline later than the signal (in a replay at full speed, many ticks later), so an
    order just signalled is in neither yet.
    """

    __slots__ = ("_book", "_reference", "_token")

    def __init__(self, book: _Book, instrument_token: int,
                 reference: _Reference | None = None) -> None:
        self._book = book
        self._token = instrument_token
        self._reference = reference or _Reference()

    @property
    def strategy_id(self) -> str:
        return self._book.strategy_id

    @property
    def instrument_token(self) -> int:
        """The instrument this strategy instance trades."""
        return self._token

    @property
    def now_ns(self) -> int:
        """Event time of the tick being processed (ns since the epoch, UTC)."""
        return self._book.clock.now_ns

    @property
    def mis_cutoff_ns(self) -> int:
        """Event time of today's MIS cut-off (15:20 IST, the day of the tick being processed):
        at the first tick at or after it the paper exchange cancels the open MIS orders and
        squares off the MIS positions, and rejects new MIS orders (``MIS_CUTOFF``), as
        Zerodha does. ``if ctx.now_ns >= ctx.mis_cutoff_ns - 15 * 60 * 10**9:`` stops
        opening intraday positions in the last quarter of an hour before it."""
        return ist_ns(ist_date(self._book.clock.now_ns), MIS_SQUAREOFF)

    @property
    def past_mis_cutoff(self) -> bool:
        """True when the strategy trades MIS by default (its file's ``product: MIS``) and
        today's cut-off is past: a new MIS order would be rejected (``MIS_CUTOFF``), and
        what it holds is being squared off. The built-in strategies open nothing then."""
        return self._book.product is Product.MIS and self.now_ns >= self.mis_cutoff_ns

    @property
    def past_exit(self) -> bool:
        """True from the strategy file's ``exit_at`` (15:15 IST for ``product: MIS`` unless
        it says otherwise) to the end of the day, or past the MIS cut-off: the runner is
        closing what the strategy holds and drops its signals that would open or add. The
        built-in strategies open nothing then."""
        exit_at = self._book.exit_at
        if exit_at is not None and self.now_ns >= ist_ns(ist_date(self.now_ns), exit_at):
            return True
        return self.past_mis_cutoff

    @property
    def cash(self) -> int:
        """The strategy's cash in paise: initial cash minus buys plus sells minus charges."""
        return self._book.cash

    def position(self, token: int | None = None) -> int:
        """Signed intended quantity held in ``token`` (default: this instance's instrument)."""
        return self._book.positions.get(self._token if token is None else token, 0)

    def filled(self, token: int | None = None) -> int:
        """Signed quantity the venue has filled in ``token`` (default: this instance's
        instrument): what the strategy holds, bracket exits and square-offs included."""
        return self._book.filled.get(self._token if token is None else token, 0)

    def average_price(self, token: int | None = None) -> int | None:
        """The average price (paise, to the nearest paisa) of what the venue has filled in
        ``token`` (default: this instance's instrument), as Kite's position average: fills
        that add to the position are averaged in, those that reduce it leave it, and one
        that reverses it starts it afresh at its own price. None when flat. It comes from
        the fills, so it survives a restart where state kept at an entry signal does not
        (the replay of the day's ticks shows the strategy the position it held, not its
        entry): ``breakout`` puts its ATR stop back from it."""
        avg = self._book.average.get(self._token if token is None else token)
        if avg is None or isinstance(avg, int):
            return avg
        return (2 * avg.numerator + avg.denominator) // (2 * avg.denominator)  # (half up)

    def pending(self, token: int | None = None) -> int:
        """Signed quantity signalled but not filled (``position - filled``): the strategy's
        orders on their way to the venue, resting there, or being cancelled, buys less
        sells (a resting buy and sell of the same size net to 0: look at ``open_orders``
        too). A bracket's exit legs are the system's, in neither figure until they fill."""
        t = self._token if token is None else token
        return self._book.positions.get(t, 0) - self._book.filled.get(t, 0)

    def open_orders(self, token: int | None = None) -> list[OpenOrder]:
        """The strategy's orders working in ``token`` (default: this instance's
        instrument), oldest first: placed, not yet filled in full, cancelled or rejected."""
        want = self._token if token is None else token
        return [o for o in self._book.orders.values() if o.instrument_token == want]

    def cancel(self, order: OpenOrder | str) -> CancelOrder:
        """A request to cancel ``order`` (an ``OpenOrder`` or its id), to return among the
        signals: ``return [ctx.cancel(o) for o in ctx.open_orders()]``. Its unfilled part
        is cancelled as of this tick (a fill by then stands); the order stays in
        ``open_orders`` (``cancel_requested``) until the venue confirms. Asking again, or
        for an order no longer open (or not the strategy's), does nothing but count in its
        status (``cancels_ignored``, in ``GET /api/v1/strategies``)."""
        if isinstance(order, OpenOrder):
            order_id = order.order_id
        elif isinstance(order, str):
            order_id = order
        else:
            raise TypeError(f"ctx.cancel takes an OpenOrder (from ctx.open_orders()) or its "
                            f"order id, not {type(order).__name__}")
        return CancelOrder(strategy_id=self._book.strategy_id, order_id=order_id)

    def tick_size(self, reference: int | None = None) -> int:
        """NSE's tick size in paise today for this instrument: the one the paper exchange
        checks prices against. Limit, trigger and bracket prices must be multiples of it,
        or the order is rejected (``TICK_SIZE``): ``stop = price * 99 // 100 // t * t``.

        Without ``reference`` it is taken from what the exchange takes it from: the latest
        tick's previous close (``tick.close``), else the first price of the instrument today
        (IST), not the current price (a stock that opened at 1001 and trades at 998 has a
        0.10 tick all day). ``reference`` (paise) asks for the tick of that price instead."""
        if reference is None:
            reference = self._reference.price
            if reference is None:
                raise ValueError("no tick of this instrument seen yet: pass a reference price")
        return nse_tick_sizes().at(ist_date(self._book.clock.now_ns), reference)

    def buy(self, quantity: int, **order: Any) -> Signal:
        """A BUY signal for this instrument; ``order`` takes any other ``Signal`` field."""
        return self.signal(Side.BUY, quantity, **order)

    def sell(self, quantity: int, **order: Any) -> Signal:
        """A SELL signal for this instrument; ``order`` takes any other ``Signal`` field."""
        return self.signal(Side.SELL, quantity, **order)

    def signal(
        self,
        side: Side,
        quantity: int,
        *,
        order_type: OrderType = OrderType.MARKET,
        limit_price: int | None = None,
        trigger_price: int | None = None,
        validity: Validity = Validity.DAY,
        product: Product | None = None,
        take_profit: int | None = None,
        stop_loss: int | None = None,
        reason: str = "",
        instrument_token: int | None = None,
    ) -> Signal:
        """Build a ``Signal`` with ``strategy_id`` filled in (the runner adds ``price_hint``);
        ``product`` defaults to the strategy file's (``product:``, else CNC)."""
        return Signal(
            strategy_id=self._book.strategy_id,
            instrument_token=self._token if instrument_token is None else instrument_token,
            side=side,
            quantity=quantity,
            order_type=order_type,
            limit_price=limit_price,
            trigger_price=trigger_price,
            validity=validity,
            product=self._book.product if product is None else product,
            take_profit=take_profit,
            stop_loss=stop_loss,
            reason=reason,
        )


class Strategy:
    """Base class of every strategy. Subclass it, declare ``Params``, implement a handler.

    - ``Params``: a ``StrategyParams`` subclass, validated when the config is loaded.
    - ``warmup``: ticks to see before any signal counts (set it in ``setup`` from params);
      signals returned earlier are dropped by the runner.
    - ``on_tick(tick, ctx)`` and/or ``on_bar(bar, ctx)`` return signals (and cancels of
      the strategy's open orders, ``ctx.cancel``) or ``None``.
      Bars last ``bar_seconds`` (class attribute, 60), or the ``bar_seconds`` param if
      ``Params`` declares one.
    - ``keeps_ticks``: set ``True`` if the strategy stores tick objects; otherwise the
      backtest may hand it one reused tick view (fast path), and a new one after each
      it kept.
    """

    Params: ClassVar[type[StrategyParams]] = StrategyParams
    keeps_ticks: ClassVar[bool] = False
    bar_seconds: ClassVar[int] = 60
    warmup: int = 0

    def __init__(self, params: StrategyParams, instrument_token: int) -> None:
        self.params = params
        self.instrument_token = instrument_token
        self.setup()

    def setup(self) -> None:
        """Build indicators and state here; ``self.params`` is already validated."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> Sequence[Signal | CancelOrder] | None:
        """Called for every tick of this instrument, in event-time order."""
        return None

    def on_bar(self, bar: Bar, ctx: Context) -> Sequence[Signal | CancelOrder] | None:
        """Called when a bar closes (only if overridden); see ``bar_interval``."""
        return None

    def bar_interval(self) -> int:
        """Bar length in seconds: the ``bar_seconds`` param if declared, else the class's."""
        return int(getattr(self.params, "bar_seconds", type(self).bar_seconds))

    @classmethod
    def uses_bars(cls) -> bool:
        return cls.on_bar is not Strategy.on_bar
