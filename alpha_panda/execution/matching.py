"""Matching on the paper exchange: resting orders against the ticks of their instrument.

An order is matched on ticks after it reaches the book (``_eligible``), in tick order: those
it missed are replayed from the instrument's history when it rests (``_rest``), later ones as
they come (``PaperExchange.on_tick``). What a match fills at: a limit order its limit (the tick
price if it was marketable on arrival), a market order the tick price ± slippage, or the tick's
depth walked (``_market_fills``, ``_market_price``). Kept apart from order placement and the
events a fill sends out; ``PaperExchange`` inherits this (a mixin: no call layer per tick) and
the state it reads is the exchange's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from alpha_panda.domain.events import MarketTick, Payload
from alpha_panda.domain.values import OrderType, Side, Validity
from alpha_panda.execution.orders import Order
from alpha_panda.execution.pricing import depth_fills, seeded_rng, slipped, volume_share

if TYPE_CHECKING:
    from collections import deque
    from decimal import Decimal

    from alpha_panda.execution.config import ExecutionConfig
    from alpha_panda.execution.market import CircuitBands

_BUY = Side.BUY
_LIMIT = OrderType.LIMIT


class TickMatching:
    """The matching part of ``PaperExchange`` (a mixin: it uses the exchange's state)."""

    if TYPE_CHECKING:
        config: ExecutionConfig
        seed: int
        _bands: CircuitBands | None
        _slip: Decimal
        _latency_ns: int
        _history: dict[int, deque[MarketTick]]
        _unordered: set[int]
        _open: dict[int, list[Order]]

        def _reference(self, token: int, now_ns: int) -> int | None: ...
        def _tick_size(self, now_ns: int, reference: int) -> int: ...
        def _cancel(self, order: Order, reason: str, ts: int, out: list[Payload]) -> None: ...
        def _fill(self, order: Order, qty: int, price: int, ts: int, out: list[Payload]) -> None: ...

    def _rest(self, orders: Sequence[Order], out: list[Payload]) -> None:
        """Put orders of one instrument on the book and replay the ticks they have missed.

        They are matched tick by tick together, in book order, as ``on_tick`` would have
        matched them had they been on time: the legs of a bracket, placed at once, must see
        each tick in turn, or the first leg would catch up over the whole history (and fill
        on a late tick) before its sibling saw the tick that should have filled it first.
        """
        self._open.setdefault(orders[0].instrument_token, []).extend(orders)
        # Only ticks at or after the earliest arrival can match (``_eligible``), and those
        # after its placing tell a limit order on its way where the market is as it gets
        # there: taken from the end of the history (an instrument's ticks come in time
        # order), usually none, for an order placed on time, instead of scanning all of it.
        token = orders[0].instrument_token
        history = self._history.get(token, ())
        if token in self._unordered:  # a tick came after a later one: look at every tick
            missed = list(history)
        else:
            first = min(min(o.arrival_ns, o.created_ns + 1) for o in orders)
            missed = []
            for tick in reversed(history):
                if tick.ts < first:
                    break
                missed.append(tick)
            missed.reverse()
        for tick in missed:
            pending = False
            for order in orders:
                if order.status.is_open:
                    pending = True
                    self._match(order, tick, out)
            if not pending:
                break

    def _eligible(self, order: Order, ts: int) -> bool:
        if order.order_type is OrderType.MARKET:
            return ts >= order.arrival_ns
        return ts > order.arrival_ns

    def _match(self, order: Order, tick: MarketTick, out: list[Payload]) -> None:
        ts = tick.ts
        if not self._eligible(order, ts):
            if order.order_type is _LIMIT and order.created_ns < ts and not order.last_ts \
                    and order.arrival_ns - order.created_ns <= self._latency_ns:
                # on its way to the book (latency, not queued for the open): the market as
                # it gets there says whether it takes the market's price or rests at its
                # limit; else a gap past a target resting at 1,020 sold it at 1,030
                assert order.limit_price is not None
                order.rested = order.side.sign * (order.limit_price - tick.last_price) < 0
            return
        if ts < order.last_ts:
            return
        if order.killed_ns is not None and ts > order.killed_ns and order.killed_by == "exit":
            return  # a leg an exit cut then (a rebuild's record): it waits for that exit
        order.last_ts = ts
        cfg = self.config
        if order.cutoff_ns is not None and ts >= order.cutoff_ns:
            self._cancel(order, "squareoff", ts, out)
            return
        if order.expires_ns is not None and ts >= order.expires_ns:
            self._cancel(order, "expired", order.expires_ns, out)
            return
        if order.killed_ns is not None and ts > order.killed_ns:
            self._cancel(order, order.killed_by, order.killed_ns, out)
            return
        price = tick.last_price
        sign = order.side.sign
        if order.is_stop and not order.triggered:
            assert order.trigger_price is not None
            if sign * (price - order.trigger_price) < 0:
                return
            order.triggered = True
        limit = order.limit_price
        market = order.order_type in (OrderType.MARKET, OrderType.SL_M)
        trades = market or (limit is not None and sign * (limit - price) >= 0)
        qty = order.leaves
        if trades and cfg.volume_participation is not None and not order.parent_order_id:
            share = volume_share(tick, cfg.volume_participation)
            if share is not None:  # whole shares now, the fraction carried to the next tick
                share += order.volume_carry
                cap = int(share)
                order.volume_carry = share - cap
                qty = min(qty, cap)
        fills: list[tuple[int, int]] = []  # (quantity, price)
        if qty <= 0 or not trades:
            pass
        elif market:
            fills = self._market_fills(order, price, tick, qty)
        else:
            # a resting order is the passive side: it trades at its own limit; an IOC that
            # reached the book behind the market was cancelled there, unfilled
            fresh = order.fills == 0 and not order.rested
            assert limit is not None
            if fresh or order.validity is not Validity.IOC:
                fills = [(qty, price if fresh else limit)]
        for fill_qty, fill_price in fills:
            self._fill(order, fill_qty, fill_price, ts, out)
        order.rested = True
        if order.validity is Validity.IOC and order.status.is_open:
            self._cancel(order, "ioc", ts, out)

    def _market_fills(
        self, order: Order, price: int, tick: MarketTick, qty: int
    ) -> list[tuple[int, int]]:
        """Executions of a market order for ``qty`` against ``tick``: one per book level
        taken (depth model, when the tick has a book), else one at the slipped price."""
        if self.config.slippage_model == "depth":
            levels = depth_fills(tick.depth, order.side, qty)
            if levels:
                return levels
        return [(qty, self._market_price(order, price, tick.ts))]

    def _market_price(self, order: Order, price: int, now_ns: int) -> int:
        bps = self._slip
        if self.config.slippage_jitter_bps:
            rng = seeded_rng(self.seed, order.order_id, order.fills)
            bps += rng.randint(0, self.config.slippage_jitter_bps)
        if not bps:
            return price
        token = order.instrument_token
        reference = self._reference(token, now_ns)
        tick = self._tick_size(now_ns, price if reference is None else reference)
        moved = slipped(price, order.side, bps, tick)
        band = None if self._bands is None or reference is None else self._bands.limits(
            token, reference, tick)
        if band is not None:
            # No trade prints beyond the circuit limit (and Kite's market protection caps a
            # market order's price there): slippage stops at the band, and never moves a
            # price already beyond it (a band flexed since the file was written) further.
            if order.side is _BUY:
                if moved > band[1]:
                    moved = max(band[1], price)
            elif moved < band[0]:
                moved = min(band[0], price)
        return moved
