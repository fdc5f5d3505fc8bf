"""Order acceptance rules of the paper exchange: what NSE (and Kite) would reject at entry.

``validate`` answers None or ``(reason_code, message)``; the exchange turns a rejection
into ``OrderRejected``. Reason codes: QUANTITY, PRICE_MISSING, TRIGGER_MISSING, PRICE,
TICK_SIZE, BRACKET (a bracket's exits on the wrong side of its entry: see ``bracket_inverted``),
MARKET_CLOSED, MIS_CUTOFF, PRICE_BAND (circuit limits), TRIGGER_PRICE (a stop whose trigger
the market has already crossed, or a stop-limit whose limit is on the wrong side of its
trigger), STALE_ORDER (the order arrives before the oldest tick the exchange still keeps, so
it cannot be matched faithfully). The exchange adds CNC_SHORT (a
CNC sell beyond the strategy's delivery holdings, ``cnc_short``).

The MIS cut-off (``mis_cutoff``) is the one rule the zerodha engine asks too, before it
places an order, so that a late MIS order is rejected alike on paper and live.

Brackets are checked here only: the paper exchange is the one venue that places their exits
(the Zerodha engine sends no bracket), and the check needs no state of the risk manager's.
"""

from __future__ import annotations

from collections.abc import Iterable, Reversible

from alpha_panda.domain.events import MarketTick
from alpha_panda.domain.values import OrderType, Product, format_rupees, on_tick_grid
from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.market import CircuitBands, MarketCalendar, SessionClock
from alpha_panda.execution.orders import Order


def reference_price(
    history: Reversible[MarketTick], now_ns: int, session_open: tuple[int, int] | None
) -> int | None:
    """Circuit-band reference at ``now_ns`` (``circuit_bands.json``): the previous close
    carried by the latest tick at/before now; without one, the session's first traded
    price, ``session_open`` = (ts, price) of the instrument's first tick of now's IST day,
    if that tick is at/before now; before it, the latest price (the last session's, the
    nearest thing to a previous close). None before any tick.

    Only ticks at/before ``now_ns`` count, so an order processed late gets the reference
    it would have got in time.
    """
    for tick in reversed(history):
        if tick.ts <= now_ns:
            if tick.close:
                return tick.close
            if session_open is not None and session_open[0] <= now_ns:
                return session_open[1]
            return tick.last_price
    return None


def _off_grid(prices: Iterable[int], tick: int) -> int | None:
    """The first price not on the ``tick`` grid, or None."""
    return next((p for p in prices if not on_tick_grid(p, tick)), None)


def entry_reference(order: Order) -> tuple[int, str] | None:
    """The price a bracket's exits are measured from, and what it is: the limit price of a
    limit (or stop-limit) entry, the trigger of a stop-market one (it fills at or beyond
    it), else the last price the strategy saw (``price_hint``). None: nothing to measure."""
    if order.limit_price is not None:
        return order.limit_price, "limit price"
    if order.order_type is OrderType.SL_M and order.trigger_price is not None:
        return order.trigger_price, "trigger price"
    if order.price_hint is not None:
        return order.price_hint, "last price"
    return None


def bracket_inverted(order: Order) -> str | None:
    """Why ``order``'s bracket exits are on the wrong side of its entry, or None.

    A buy's stop-loss must be below its entry and its take-profit above it (a sell's the
    other way round): an exit on the wrong side fills as soon as the entry does, for a
    certain loss (a take-profit below a buy's entry is a marketable sell limit)."""
    tp, sl = order.take_profit, order.stop_loss
    if tp is None and sl is None:
        return None
    ref = entry_reference(order)
    if ref is None:
        return None
    entry, what = ref
    sign = order.side.sign
    side = order.side.value.lower()
    wrong = []
    if sl is not None and sign * (entry - sl) <= 0:
        wrong.append(f"stop-loss {format_rupees(sl)} must be {'below' if sign > 0 else 'above'}")
    if tp is not None and sign * (tp - entry) <= 0:
        wrong.append(f"take-profit {format_rupees(tp)} must be {'above' if sign > 0 else 'below'}")
    if not wrong:
        return None
    return (f"bracket exits on the wrong side of the entry: a {side}'s {' and '.join(wrong)} "
            f"the entry {format_rupees(entry)} ({what})")


def mis_cutoff(product: Product, arrival_ns: int, clock: SessionClock, *,
               exit_only: bool = False) -> tuple[str, str] | None:
    """``MIS_CUTOFF`` for an MIS order reaching the venue at/after its day's cut-off
    (``clock``'s: ``mis_squareoff``, 15:20 IST by default), else None; ``exit_only``: the
    order only reduces an MIS position (``domain.values.reduces``), which Zerodha still
    accepts then: "fresh" MIS orders are what
    it refuses after its auto square-off time (support.zerodha.com, intraday auto square-off
    timings). The paper exchange and the zerodha engine both ask this, so a late MIS order
    meets the same ``OrderRejected`` on either."""
    if product is not Product.MIS or exit_only:
        return None
    cutoff = clock.session(arrival_ns).cutoff
    if cutoff is None or arrival_ns < cutoff:
        return None
    return "MIS_CUTOFF", (f"new MIS orders are not accepted from {clock.cutoff:%H:%M} IST, "
                          "the intraday square-off")


def validate(
    order: Order, now_ns: int, cfg: ExecutionConfig, calendar: MarketCalendar,
    bands: CircuitBands | None, clock: SessionClock, *, reference: int | None, tick: int,
    dropped_ts: int,
) -> tuple[str, str] | None:
    """The first rule ``order`` breaks at ``now_ns``, or None when it may go on the book.

    ``tick`` is the instrument's tick size in paise that day; ``reference`` its circuit-band
    reference price (None: no band applies)."""
    if order.quantity <= 0:
        return "QUANTITY", f"quantity must be positive, got {order.quantity}"
    kind = order.order_type
    limit, trigger = order.limit_price, order.trigger_price
    if limit is None and kind in (OrderType.LIMIT, OrderType.SL):
        return "PRICE_MISSING", f"{kind} order needs a limit price"
    is_stop = kind in (OrderType.SL, OrderType.SL_M)
    if is_stop and trigger is None:
        return "TRIGGER_MISSING", f"{kind} order needs a trigger price"
    # a price the order type has no use for: the strategy meant another type (a limit price
    # on a market order would fill at any price)
    if limit is not None and kind in (OrderType.MARKET, OrderType.SL_M):
        return "PRICE_NOT_ALLOWED", (f"{kind} orders take no limit price (got "
                                     f"{format_rupees(limit)}): LIMIT and SL orders do")
    if trigger is not None and kind in (OrderType.MARKET, OrderType.LIMIT):
        return "TRIGGER_NOT_ALLOWED", (f"{kind} orders take no trigger price (got "
                                       f"{format_rupees(trigger)}): SL and SL-M orders do")
    if kind is OrderType.SL and limit is not None and trigger is not None \
            and order.side.sign * (limit - trigger) < 0:
        # Kite refuses it ("Trigger price can't be higher/lesser than price"): once
        # triggered, its limit would rest behind the market, a stop that buys below its trigger
        buy = order.side.sign > 0
        return "TRIGGER_PRICE", (
            f"a stop-loss {'buy' if buy else 'sell'}'s trigger {format_rupees(trigger)} must be "
            f"{'at or below' if buy else 'at or above'} its limit price {format_rupees(limit)}")
    prices: list[int] = []
    if limit is not None or trigger is not None or order.take_profit is not None \
            or order.stop_loss is not None:  # a plain market order has no price to check
        prices = [p for p in (limit, trigger) if p is not None]
        exits = [p for p in (order.take_profit, order.stop_loss) if p is not None]
        if any(p <= 0 for p in prices + exits):
            return "PRICE", "prices must be positive"
        off = _off_grid(prices + exits, tick) if cfg.enforce_tick_size else None
        if off is not None:
            return "TICK_SIZE", (f"price {format_rupees(off)} is not a multiple of the tick "
                                 f"size {format_rupees(tick)} (NSE's, by date and price band)")
        inverted = bracket_inverted(order) if exits else None
        if inverted is not None:
            return "BRACKET", inverted
    if cfg.market_hours == "reject" and not calendar.is_open(order.arrival_ns):
        return "MARKET_CLOSED", "order outside NSE market hours (09:15-15:30 IST) or holiday"
    # (no order here reduces an MIS position after the cut-off: the square-off flattens the
    # instrument's at its first tick at/after it, and a signal comes from a tick)
    late = mis_cutoff(order.product, order.arrival_ns, clock)
    if late is not None:
        return late
    band = bands.limits(order.instrument_token, reference, tick) \
        if prices and bands and reference else None
    if band is not None and not all(band[0] <= p <= band[1] for p in prices):
        outside = next(p for p in prices if not band[0] <= p <= band[1])
        return "PRICE_BAND", (f"price {format_rupees(outside)} is outside the circuit band "
                              f"{format_rupees(band[0])}-{format_rupees(band[1])}")
    hint = order.price_hint
    crossed = hint is not None and trigger is not None and order.side.sign * (trigger - hint) <= 0
    if is_stop and crossed:
        return "TRIGGER_PRICE", (
            "trigger already crossed: a stop buy needs a trigger above the last price, "
            "a stop sell one below"
        )
    immediate = kind is OrderType.MARKET and order.arrival_ns == now_ns
    if not immediate and dropped_ts >= order.arrival_ns:
        return "STALE_ORDER", "order arrives before the oldest tick kept in history"
    return None
