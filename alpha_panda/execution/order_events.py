"""Order events on the paper exchange: each status change of an order and the payload it
sends out (``OrderSubmitted``, ``OrderRejected``, ``OrderCancelled``, ``OrderFilled``), and
what a fill books besides: its charges (a CNC fill's through its day's netting book, an MIS
square-off's call-and-trade fee), CNC holdings, the MIS position it is squared off with, and
the bracket exits it places or cuts. Kept apart from placement and matching, which decide
*when* an order fills; ``PaperExchange`` inherits this (a mixin: no call layer per fill) and
the state it reads is the exchange's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from alpha_panda.domain.events import (
    NO_CHARGES,
    Charges,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    derive_id,
)
from alpha_panda.domain.values import Product, Side
from alpha_panda.execution.costs import Segment
from alpha_panda.execution.netting import CncNetting
from alpha_panda.execution.orders import Order, OrderStatus

if TYPE_CHECKING:
    from datetime import date

    from alpha_panda.execution.config import ExecutionConfig
    from alpha_panda.execution.costs import RateCards
    from alpha_panda.execution.holdings import CncHoldings
    from alpha_panda.execution.market import Session

# Enum members bound once: attribute access on an enum class costs more than a global.
_MIS = Product.MIS
_CNC = Product.CNC
_BUY = Side.BUY
_FILLED = OrderStatus.FILLED
_DELIVERY = Segment.EQUITY_DELIVERY


class OrderEvents:
    """The events part of ``PaperExchange`` (a mixin: it uses the exchange's state)."""

    if TYPE_CHECKING:
        config: ExecutionConfig
        _costs: RateCards | None
        _cnc: dict[str, CncNetting]
        _holdings: CncHoldings
        _orders: dict[str, Order]
        _mis: dict[tuple[str, int, date], int]
        _squaring: dict[str, date]
        _squareoff_fees: dict[tuple[str, int, date], tuple[int, int]]

        def _session(self, ts: int) -> Session: ...
        def _close(self, order: Order) -> None: ...
        def _late_squareoff(self, order: Order, ts: int, day: date) -> None: ...
        def _book_held(self, key: tuple[str, int, Product], ts: int, signed: int
                       ) -> tuple[int, int]: ...
        def _exits(self, order: Order, qty: int, fill: int, n: int, ts: int,
                   out: list[Payload]) -> None: ...
        def _fit_legs(self, key: tuple[str, int, Product], ts: int, out: list[Payload]
                      ) -> None: ...
        def _fit_exits(self, key: tuple[str, int, Product], ts: int, out: list[Payload]
                       ) -> None: ...

    def _submitted(self, order: Order, ts: int) -> OrderSubmitted:
        order.transition(OrderStatus.SUBMITTED)
        return OrderSubmitted(
            order_id=order.order_id, signal_id=order.signal_id, strategy_id=order.strategy_id,
            instrument_token=order.instrument_token, side=order.side, quantity=order.quantity,
            order_type=order.order_type, limit_price=order.limit_price,
            trigger_price=order.trigger_price, product=order.product, validity=order.validity,
            tag=order.signal_id[:20], parent_order_id=order.parent_order_id, ts=ts,
            origin=order.origin, take_profit=order.take_profit, stop_loss=order.stop_loss,
            expires_ns=order.expires_ns if order.cutoff_ns is None else (
                order.cutoff_ns if order.expires_ns is None
                else min(order.expires_ns, order.cutoff_ns)),
        )

    def _reject(self, order: Order, code: str, message: str, ts: int) -> OrderRejected:
        order.transition(OrderStatus.REJECTED)
        self._close(order)
        return OrderRejected(
            order_id=order.order_id, strategy_id=order.strategy_id,
            instrument_token=order.instrument_token, side=order.side, quantity=order.quantity,
            reason_code=code, message=message, ts=ts, origin=order.origin,
            order_type=order.order_type, limit_price=order.limit_price,
            trigger_price=order.trigger_price, product=order.product,
        )

    def _cancel(self, order: Order, reason: str, ts: int, out: list[Payload]) -> None:
        order.transition(OrderStatus.EXPIRED if reason == "expired" else OrderStatus.CANCELLED)
        self._close(order)
        if order.product is _CNC:
            self._holdings.cancelled(order, reason, ts)  # a sell's unfilled part is free
        out.append(
            OrderCancelled(
                order_id=order.order_id, strategy_id=order.strategy_id,
                instrument_token=order.instrument_token, side=order.side,
                filled_quantity=order.filled, leaves_quantity=order.leaves, reason=reason, ts=ts,
                origin=order.origin,
            )
        )

    def _fill(self, order: Order, qty: int, price: int, ts: int, out: list[Payload]) -> None:
        before = order.turnover
        n = order.fills
        order.record_fill(qty, price)
        charges = NO_CHARGES
        if self._costs is not None:
            charges = self._charges(order, n, qty, price, ts, before)
            if order.origin == "squareoff":  # Zerodha's call-and-trade fee
                charges = self._squareoff_fee(order, qty, ts, charges)
        order_id = order.order_id
        filled = order.filled
        out.append(
            OrderFilled(
                order_id=order_id, fill_id=derive_id(order_id, "fill", n),
                strategy_id=order.strategy_id, instrument_token=order.instrument_token,
                side=order.side, quantity=qty, price=price, cumulative_quantity=filled,
                leaves_quantity=order.quantity - filled, average_price=order.average_price,
                product=order.product, charges=charges, ts=ts, origin=order.origin,
            )
        )
        key3 = (order.strategy_id, order.instrument_token, order.product)
        was, now = self._book_held(key3, ts, qty if order.side is _BUY else -qty)
        if order.product is _CNC:
            self._holdings.filled(order, qty, ts)
        elif order.product is _MIS:
            day = self._squaring.pop(order_id, None) or self._session(ts).day
            key = (order.strategy_id, order.instrument_token, day)
            self._mis[key] = self._mis.get(key, 0) + (qty if order.side is _BUY else -qty)
            self._late_squareoff(order, ts, day)
        if order.status is _FILLED:
            self._close(order)
            if order.sibling_order_id is not None:
                sibling = self._orders.get(order.sibling_order_id)
                if sibling is not None and sibling.status.is_open:
                    self._cancel(sibling, "oco", ts, out)
        if order.origin == "signal" and (
                abs(now) < abs(was) or (now and (now > 0) != (was > 0))):
            # the strategy took it down: the legs follow (a bracket entry's too: legs of a
            # long it reversed would have sold into the short)
            self._fit_legs(key3, ts, out)
        if order.parent_order_id is None and (
            order.take_profit is not None or order.stop_loss is not None
        ):
            self._exits(order, qty, price, n, ts, out)
        elif order.origin == "bracket":
            self._fit_exits(key3, ts, out)  # and its exits follow the legs

    def _squareoff_fee(self, order: Order, qty: int, ts: int, charges: Charges) -> Charges:
        """Zerodha's fee for squaring off the position ``order`` takes down (of its strategy
        and instrument, on its day), on that position's net square-off quantity: less what
        its square-offs were charged so far, so it may be negative. A late fill's square-off
        can undo an earlier one (the strategy had closed the position itself before the
        cut-off, but its fill was read after the square-off tick): then nothing is due, as
        when it is read in time."""
        assert self._costs is not None
        day = self._squaring.get(order.order_id) or self._session(ts).day
        key = (order.strategy_id, order.instrument_token, day)
        net, charged = self._squareoff_fees.get(key, (0, 0))
        net += qty if order.side is _BUY else -qty
        due = self._costs.on(day).auto_squareoff_charge(order.segment, abs(net))
        self._squareoff_fees[key] = (net, due)
        if due == charged:
            return charges
        return msgspec.structs.replace(charges, auto_squareoff=due - charged)

    def _charges(self, order: Order, n: int, qty: int, price: int, ts: int, before: int
                 ) -> Charges:
        """Charges of fill ``n`` (``qty`` at ``price``; the order's turnover was ``before``
        and is now ``order.turnover``): a CNC fill's through its day's netting book, any
        other the order's charges after it minus before it."""
        assert self._costs is not None
        day = self._session(ts).day
        card = self._costs.on(day)
        if order.segment is _DELIVERY:
            netting = self._cnc.get(card.version)
            if netting is None:
                netting = self._cnc[card.version] = CncNetting(card, self.config.exchange)
            return netting.fill_charges(
                order.strategy_id, order.instrument_token, day,
                order.order_id, n, order.side, qty, price, ts)
        return card.fill_charges(
            order.segment, order.side, before, order.turnover, self.config.exchange)
