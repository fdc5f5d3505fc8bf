"""The engine's pre-trade rules: ``_rules`` runs them in a fixed order, with what they
measure (order size and price, price band, exposure, CNC holdings, rate windows).

A mixin of ``RiskEngine`` (it reads the engine's state; only the rate windows' slots are
taken here), apart from the engine's bookkeeping of fills, pending orders and P&L. The
engine's docstring says what each input counts for.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Final

import msgspec

from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.values import OrderType, Product, Side, format_rupees, reduces
from alpha_panda.marketdata.instruments import symbol_of
from alpha_panda.risk.limits import Reason, RiskLimits
from alpha_panda.risk.state import RateWindow

if TYPE_CHECKING:
    from alpha_panda.domain.events import Signal
    from alpha_panda.portfolio.ledger import PositionLedger
    from alpha_panda.risk.state import RiskStateStore

_US_PER_S = 1_000_000
_BUY = Side.BUY
_SELL = Side.SELL
_CNC = Product.CNC
_MIS = Product.MIS


_RULE_LIMITS: Final = (
    "fat_finger_qty", "fat_finger_notional", "max_order_qty", "price_band_percent",
    "max_order_notional", "max_position", "max_gross_exposure", "daily_loss", "max_open_orders",
)
_ACCOUNT_LIMITS: Final = (
    "account_max_gross_exposure", "account_daily_loss", "orders_per_second", "orders_per_minute",
    "orders_per_day",
)


def _no_limits(lim: RiskLimits, acct: RiskLimits) -> bool:
    """True when none of the limits ``_rules`` reads after the kill switch is set."""
    return all(getattr(lim, name) is None for name in _RULE_LIMITS) and all(
        getattr(acct, name) is None for name in _ACCOUNT_LIMITS)


def _reduces(held: int, s: Signal) -> bool:
    """``s`` takes ``held`` toward zero without crossing it."""
    return reduces(held, s.quantity if s.side is _BUY else -s.quantity)


class RiskRules:
    """The rules part of ``RiskEngine`` (a mixin: it uses the engine's state)."""

    if TYPE_CHECKING:
        broker: str
        account: str
        store: RiskStateStore
        _filled: dict[tuple[str, int], int]
        _pending_qty: dict[tuple[str, int], int]
        _pending_sells: dict[tuple[str, int], int]
        _resting: dict[tuple[str, int], list[int]]
        _cnc_filled: dict[tuple[str, int], int]
        _product_filled: dict[tuple[str, int, Product], int]
        _cnc_pending: dict[tuple[str, int], int]
        _exits: dict[tuple[str, int], list[int]]
        _mis_open: dict[tuple[str, int], list[int]]
        _mis_cutoff: dict[tuple[str, int], int]
        _legs: dict[tuple[str, int], set[Product]]
        _open_orders: dict[str, int]
        _order_prices: dict[int, int]
        _halted: set[str]
        _last: dict[int, int]
        _limits: dict[str | None, RiskLimits]
        _unlimited: dict[str, bool]

        def position(self, strategy_id: str, token: int) -> int: ...
        def day_pnl(self, strategy_id: str | None = None) -> int: ...
        def _filled_qty(self, strategy_id: str, token: int) -> int: ...
        def _book(self) -> PositionLedger: ...
        def _strategy_limits(self, strategy_id: str) -> RiskLimits: ...
        def _account_limits(self) -> RiskLimits: ...
        def _flattening(self, strategy_id: str, token: int, product: Product) -> int: ...

    def _toward_target(self, s: Signal) -> Signal:
        """A copy for a broker other than the strategy's first, sized down to what takes
        the position here to the strategy's intent if all of it would go past: an exit of
        100 where 40 are held (the entry part filled here) sells 40, not 0 and not 100.
        Never sized up (a missed entry is not chased at a later price), and one that moves
        away from the intent is left to the rules (``EXCEEDS_INTENT``, ``REDUCE_ONLY``)."""
        assert s.target is not None
        toward = (s.target - self.position(s.strategy_id, s.instrument_token)) * s.side.sign
        if 0 < toward < s.quantity:
            return msgspec.structs.replace(s, quantity=toward)
        return s

    def _rules(self, signal_id: str, s: Signal, now_ns: int,
               flatten_order: bool = False) -> tuple[str, str] | None:
        sid = s.strategy_id
        qty = s.quantity
        if qty <= 0:
            return Reason.INVALID, f"quantity must be positive, got {qty}"
        token = s.instrument_token
        filled = self._filled_qty(sid, token)
        unlimited = self._unlimited.get(sid)
        if unlimited is None:
            unlimited = self._unlimited[sid] = _no_limits(
                self._strategy_limits(sid), self._account_limits())
        killed = self.store.kill_switch(self.account)
        halted = bool(self._halted) and sid in self._halted
        cnc_sell = s.product is _CNC and s.side is not _BUY
        if unlimited and not killed and not halted and not cnc_sell and not s.reduce_only \
                and not s.follows:
            return None  # no limit is set for this strategy or the account, and no CNC sell
        position = filled + self._pending_qty.get((sid, token), 0)
        after = position + (qty if s.side is _BUY else -qty)
        reducing = abs(after) <= abs(position) and (after == 0 or (after > 0) == (position > 0))
        # The kill switch cancels every open order (the engines read it too), so its
        # flatten reduces the *filled* position of its product, whatever resting orders
        # still count here (a CNC long and an MIS short of one instrument: two orders),
        # less what flatten orders on their way already close: a second flatten of it (the
        # switch set twice in a row, a halt's and the switch's) would reverse it.
        flatten = (killed or halted) and flatten_order and _reduces(
            self._product_filled.get((sid, token, s.product), 0)
            + self._flattening(sid, token, s.product), s)
        if (killed or halted) and flatten_order and not flatten:
            return Reason.KILL_SWITCH if killed else Reason.STRATEGY_HALTED, (
                f"a flatten order would not close {sid}'s {s.product.value} position in "
                f"{token} but open or reverse one: what is filled, less the flatten orders "
                "already on their way, is not there to close")
        if killed and not flatten:
            return Reason.KILL_SWITCH, "kill switch is active: new orders are blocked"
        if halted and not flatten:
            return Reason.STRATEGY_HALTED, (f"strategy {sid} is halted: its new orders are "
                                            "blocked until it is put back in service")
        if flatten:
            return None  # it only closes what is filled: no limit stands in its way
        if s.follows and s.target is not None and after and (
                abs(after) > abs(s.target) or (after > 0) != (s.target > 0)) \
                and abs(after - s.target) >= abs(position - s.target):  # (toward it: passes)
            return Reason.EXCEEDS_INTENT, (
                f"{self.broker} would hold {after} where the strategy means to hold "
                f"{s.target}: it follows {s.follows}'s fills, and {s.follows} did not take "
                "what this one did")
        if s.reduce_only and not reducing:
            return Reason.REDUCE_ONLY, (
                f"an exit of {qty} would open or reverse a position on {self.broker}, where the "
                f"strategy holds {position} (filled and pending): what it meant to close is not "
                "there (the entry was refused here, or a bracket exit, square-off or flatten "
                "closed it first)")
        # (whether it takes new risk: reducing, whichever resting orders fill or not)
        no_risk = reducing and self._takes_no_risk(sid, token, position, s)
        if s.reduce_only and not no_risk:
            # it reduces the position only if resting entries (limit, stop) fill, which they
            # may never do: sent, it could leave the account short (or long) with no intent
            sides = self._resting.get((sid, token))
            resting = (sides[0] if s.side is not _BUY else sides[1]) if sides else 0
            return Reason.REDUCE_ONLY, (
                f"an exit of {qty} is more than the strategy holds on {self.broker} for "
                f"certain: {position - s.side.opposite.sign * resting} filled or on its way at "
                f"market, and {resting} more only if its resting orders fill, which they may "
                "never do (cancel them rather than trade against them)")
        if cnc_sell:
            short = self._cnc_short(sid, token, qty)
            if short is not None:
                return Reason.CNC_SHORT, short
        if unlimited:
            return None
        lim = self._limits.get(sid)
        if lim is None:
            lim = self._strategy_limits(sid)
        acct = self._limits.get(None)
        if acct is None:
            acct = self._account_limits()
        price = self._price(s)
        notional = qty * price if price is not None else None
        # The size limits stop an order too big to open or add: one that only reduces a
        # position is never too big (else a position built in small orders, or the exit
        # at exit_at, could not be closed, and waited for the broker's square-off). Only
        # what is filled, in the order's product, is there to reduce: resting buys that
        # may never fill do not make a big sell an exit.
        exit_only = reducing and _reduces(self._product_filled.get((sid, token, s.product), 0), s)
        if not exit_only:
            failed = self._size(lim, qty, notional)
            if failed is not None:
                return failed
            if notional is None and (lim.max_order_notional is not None
                                     or lim.fat_finger_notional is not None):
                # a notional limit that cannot value the order does not let it through: a
                # market order of another instrument than the tick's, before any tick of it
                name = symbol_of(token)
                what = f"instrument {token} ({name})" if name else f"instrument {token}"
                return (Reason.MAX_ORDER_NOTIONAL if lim.max_order_notional is not None
                        else Reason.FAT_FINGER), (
                    f"no price to value the order against the notional limit: no price hint "
                    f"and no tick of {what} seen yet")
        if lim.price_band_percent is not None:
            band = self._band_violation(s, lim.price_band_percent)
            if band is not None:
                return Reason.PRICE_BAND, band
        if not exit_only and lim.max_order_notional is not None and notional is not None \
                and notional > lim.max_order_notional:
            return Reason.MAX_ORDER_NOTIONAL, (f"notional {format_rupees(notional)} > max order "
                                              f"notional {format_rupees(lim.max_order_notional)}")
        if lim.max_position is not None:
            # Each side at its worst: every open order of that side filled and none of the
            # other (a resting sell may never fill, so it frees no room for buys), and a
            # bracket's stop-loss or target there too.
            key = (sid, token)
            sells = self._pending_sells.get(key, 0)
            exit_qty = qty if s.reduce_only else 0
            squareoff = self._squareoff(key, s, now_ns)
            if s.side is _BUY:
                side, open_qty = "buy", position - filled + sells + qty
                worst = filled + self._worst_open(key, filled, _BUY, open_qty, exit_qty) \
                    + squareoff
                over = worst > lim.max_position
            else:
                side, open_qty = "sell", sells + qty
                worst = filled - self._worst_open(key, filled, _SELL, open_qty, exit_qty) \
                    - squareoff
                over = worst < -lim.max_position
            if over:
                legs = ("" if abs(worst - filled) == open_qty + squareoff
                        else ", a bracket's stop-loss or target among them")
                if squareoff:
                    legs += (f", and the MIS square-off of {squareoff} (what the "
                             "other products hold stays)")
                return Reason.MAX_POSITION, (
                    f"position could reach {worst} if every open {side} fills{legs}, "
                    f"limit {lim.max_position}")
        if not no_risk:
            if lim.max_gross_exposure is not None or acct.account_max_gross_exposure is not None:
                if price is None and self._mark(sid, token) is None:
                    # valued at nothing it passed any limit (the notional limits refuse it too)
                    name = symbol_of(token)
                    what = f"instrument {token} ({name})" if name else f"instrument {token}"
                    return Reason.MAX_GROSS_EXPOSURE, (
                        f"no price to value the order against the gross exposure limit: no "
                        f"price hint and no tick of {what} seen yet")
                for scope, limit in ((sid, lim.max_gross_exposure), (None, acct.account_max_gross_exposure)):
                    if limit is not None:
                        exposure = self._exposure(scope, s, price)
                        if exposure > limit:
                            return Reason.MAX_GROSS_EXPOSURE, (
                                f"gross exposure would be {format_rupees(exposure)}, limit "
                                f"{format_rupees(limit)}")
            if lim.daily_loss is not None or acct.account_daily_loss is not None:
                for scope, loss in ((sid, lim.daily_loss), (None, acct.account_daily_loss)):
                    if loss is not None and self.day_pnl(scope) <= -loss:
                        return Reason.DAILY_LOSS, (
                            f"daily loss {format_rupees(-self.day_pnl(scope))} reached the limit "
                            f"{format_rupees(loss)}: "
                            "only position-reducing orders pass"
                        )
        if lim.max_open_orders is not None and self._open_orders.get(sid, 0) >= lim.max_open_orders:
            return Reason.MAX_OPEN_ORDERS, f"{lim.max_open_orders} orders already open"
        if acct.orders_per_second is None and acct.orders_per_minute is None \
                and acct.orders_per_day is None:
            return None  # no account rate limit: no window to take a slot in
        windows = self._windows(acct, now_ns, s.reduce_only)
        if windows:
            code = self.store.acquire(self.account, signal_id, now_ns // 1000, windows)
            if code is not None:
                return code, f"account order rate limit reached ({code})"
        return None

    def _windows(self, acct: RiskLimits, now_ns: int, exit_: bool = False) -> list[RateWindow]:
        """The account's order-rate windows a signal takes a slot in. An exit (``reduce_only``:
        it passes only if it reduces the position) takes none of the second's or the minute's:
        refused there, it left the position open, the strategy flat or not in a burst of
        exits (every MIS strategy's at ``exit_at``), when those limits are only Kite's pace,
        which the zerodha engine keeps by waiting. It counts in the day's (Kite refuses
        what is past it)."""
        windows = []
        if acct.orders_per_second is not None and not exit_:
            windows.append(RateWindow(Reason.RATE_LIMIT_SECOND, acct.orders_per_second, _US_PER_S))
        if acct.orders_per_minute is not None and not exit_:
            windows.append(RateWindow(Reason.RATE_LIMIT_MINUTE, acct.orders_per_minute, 60 * _US_PER_S))
        if acct.orders_per_day is not None:
            day = ist_date(now_ns).isoformat()
            windows.append(RateWindow(Reason.RATE_LIMIT_DAY, acct.orders_per_day, 0, bucket=day))
        return windows

    @staticmethod
    def _size(lim: RiskLimits, qty: int, notional: int | None) -> tuple[str, str] | None:
        """FAT_FINGER or MAX_ORDER_QTY for an order that opens or adds to a position."""
        if lim.fat_finger_qty is not None and qty > lim.fat_finger_qty:
            return Reason.FAT_FINGER, f"quantity {qty} > fat-finger limit {lim.fat_finger_qty}"
        if lim.fat_finger_notional is not None and notional is not None \
                and notional > lim.fat_finger_notional:
            return Reason.FAT_FINGER, (f"notional {format_rupees(notional)} > fat-finger limit "
                                       f"{format_rupees(lim.fat_finger_notional)}")
        if lim.max_order_qty is not None and qty > lim.max_order_qty:
            return Reason.MAX_ORDER_QTY, f"quantity {qty} > max order quantity {lim.max_order_qty}"
        return None

    def _price(self, s: Signal) -> int | None:
        if s.order_type in (OrderType.LIMIT, OrderType.SL) and s.limit_price is not None:
            return s.limit_price
        if s.order_type is OrderType.SL_M and s.trigger_price is not None:
            return s.trigger_price
        return s.price_hint if s.price_hint is not None else self._last.get(s.instrument_token)

    def _band_violation(self, s: Signal, pct: Decimal | None) -> str | None:
        last = self._last.get(s.instrument_token, s.price_hint)
        if pct is None or last is None:
            return None
        for name, p in (("limit", s.limit_price), ("trigger", s.trigger_price)):
            if p is not None and abs(Decimal(p - last)) * 100 > pct * last:
                return (f"{name} price {format_rupees(p)} is more than {pct}% away from the last "
                        f"price {format_rupees(last)}")
        return None

    def _takes_no_risk(self, sid: str, token: int, position: int, s: Signal) -> bool:
        """``s`` takes the position toward flat without crossing it, whichever other open
        orders fill: every one of its own side, none of the other side's resting (limit,
        stop) ones. A resting buy may never fill, so a sell of what it would buy opens a
        short: new risk, which the daily-loss and exposure limits must see. A market order
        fills at once at the venue: it counts as filled, whenever its fill reaches this
        engine (on the pipeline, after the next signal may be decided)."""
        sides = self._resting.get((sid, token))
        if s.side is _BUY:
            return position + (sides[1] if sides else 0) + s.quantity <= 0
        return position - (sides[0] if sides else 0) - s.quantity >= 0

    def _exposure(self, scope: str | None, s: Signal, price: int | None) -> int:
        """Gross exposure of ``scope`` (a strategy, or the account) if ``s`` is filled:
        each position at its worst side (every open buy filled and no sell, or the other
        way round), as ``max_position``, so resting orders on one side do not offset what
        is filled or open on the other."""
        keys = {k for k in self._filled if scope is None or k[0] == scope}
        keys |= {k for k in self._pending_qty if scope is None or k[0] == scope}
        own = (s.strategy_id, s.instrument_token)
        keys.add(own)
        total = 0
        for key in keys:
            sid, token = key
            filled = self._filled.get(key, 0)
            sells = self._pending_sells.get(key, 0)
            buys = self._pending_qty.get(key, 0) + sells
            exit_buys = exit_sells = 0
            if key == own:
                if s.side is _BUY:
                    buys += s.quantity
                    exit_buys = s.quantity if s.reduce_only else 0
                else:
                    sells += s.quantity
                    exit_sells = s.quantity if s.reduce_only else 0
            if key in self._legs:
                buys = self._worst_open(key, filled, _BUY, buys, exit_buys)
                sells = self._worst_open(key, filled, _SELL, sells, exit_sells)
            qty = max(abs(filled + buys), abs(filled - sells))
            mark = self._last.get(token)
            if mark is None:
                mark = (price if token == s.instrument_token and price
                        else self._mark(sid, token) or 0)
            total += abs(qty) * mark
        return total

    def _mark(self, sid: str, token: int) -> int | None:
        """The price a position is valued at with no tick of its instrument seen: its last
        fill's, else its instrument's latest validated order's (pending orders count too)."""
        return self._book().last_price(sid, token) or self._order_prices.get(token)

    def _worst_open(self, key: tuple[str, int], filled: int, side: Side, open_qty: int,
                    new_exit: int = 0) -> int:
        """What ``side`` can trade at most in the position ``key``: its open orders
        (``open_qty``, of which ``new_exit`` more exits than are pending), and a bracket's
        legs resting there. The paper exchange gives each fill of a bracket entry a
        stop-loss and a target, which may trade what is held in its product; and it cuts
        the legs when an exit (``reduce_only``) fills, and the exits when a leg fills. So
        the legs and the exits trade together at most what is held, or the larger alone;
        the other orders on top: a limit sell of 20 from a long 10 may fill after the
        stop-loss sold the 10, short 20."""
        products = self._legs.get(key)
        if not products:
            return open_qty
        sign = 1 if side is _SELL else -1  # (what the legs of ``side`` close: a long, a short)
        sid, token = key
        per_product = self._product_filled
        legs = sum(max(sign * per_product.get((sid, token, p), 0), 0) for p in products)
        if not legs:
            return open_qty
        exits = self._exits.get(key)
        exit_qty = (exits[side is _SELL] if exits else 0) + new_exit
        return open_qty - exit_qty + min(exit_qty + legs, max(sign * filled, exit_qty, legs))

    def _squareoff(self, key: tuple[str, int], s: Signal, now_ns: int) -> int:
        """What the exchange's MIS square-off may trade on ``s``'s side in the position
        ``key`` beyond the MIS orders of that side (``s`` among them): the intraday
        position it closes at the cut-off (or at the instrument's first tick after it,
        the next day's if none came before the close), whatever the other products hold,
        which then stays: an intraday short of 8 frees no room for a delivery buy. Before
        the cut-off, the MIS orders and the square-off trade together at most what is held
        in MIS (the exchange cancels those open at the cut-off); from it, all of it comes
        beside them (the next day's MIS orders stay). A bracket's legs in MIS already
        count it (``_worst_open``)."""
        sid, token = key
        mis = self._product_filled.get((sid, token, _MIS), 0)
        buy = s.side is _BUY
        if not mis or (mis < 0) != buy:
            return 0
        legs = self._legs.get(key)
        if legs and _MIS in legs:
            return 0
        if now_ns >= self._mis_cutoff.get(key, now_ns + 1):
            return abs(mis)
        orders = self._mis_open.get(key)
        open_mis = (orders[not buy] if orders else 0) + (s.quantity if s.product is _MIS else 0)
        return max(abs(mis) - open_mis, 0)

    def _cnc_short(self, strategy_id: str, token: int, qty: int) -> str | None:
        """Why a CNC sell of ``qty`` would sell delivery short, or None if holdings cover it."""
        key = (strategy_id, token)
        filled = self._cnc_filled.get(key, 0)
        pending = self._cnc_pending.get(key, 0)
        held = filled + pending
        if qty <= held:
            return None
        detail = f" ({filled} filled, {pending:+d} in pending CNC orders)" if pending else ""
        name = symbol_of(token)
        what = f"instrument {token} ({name})" if name else f"instrument {token}"
        return (f"CNC sell of {qty} of {what} exceeds holdings of {max(held, 0)}"
                f"{detail}; delivery cannot be sold short (use MIS)")
