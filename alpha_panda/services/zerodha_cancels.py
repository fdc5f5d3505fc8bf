"""The zerodha trading engine's cancellations at Kite (``ZerodhaCancels``, a mixin of
``ZerodhaEngine``): the sweep of a kill switch's or halt's open orders (``_kill``) and the
cancel of one order a trader or strategy names (``_cancel``, ``note_cancel``).

Apart from the engine's placing of orders, which it shares only the engine's state with (the
order book, the clock, the Kite client); a mixin so that no call goes through another layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from alpha_panda.adapters.zerodha.client import KiteRestClient, OrderRefused
from alpha_panda.adapters.zerodha.order_sync import BROKER, SOURCE
from alpha_panda.domain.events import (
    CancelRefused,
    CancelRequested,
    Envelope,
    derive_id,
    new_envelope,
)
from alpha_panda.execution.zerodha.orders import is_our_tag, our_tag
from alpha_panda.execution.zerodha.reconcile import OrderBook, TrackedOrder
from alpha_panda.services.zerodha_topics import CONTROL_TOPIC
from alpha_panda.stream.emit import Emit

log_ = structlog.get_logger(__name__)
# Kite's statuses of an order that can no longer trade, or is being cancelled. Every other
# one may still trade and is cancelled: Kite's docs highlight only "some" interim statuses
# (OPEN PENDING, TRIGGER PENDING, AMO REQ RECEIVED, ...), and Zerodha takes a cancel of every
# order not COMPLETE, CANCELLED or REJECTED. A list of the statuses to cancel left an order
# in any status it did not name working at Kite under the kill switch.
_NOT_CANCELLABLE = frozenset({"COMPLETE", "CANCELLED", "REJECTED", "CANCEL PENDING"})
_FILLED_OR_REJECTED = frozenset({"COMPLETE", "REJECTED"})


def _cancellable(status: object) -> bool:
    return isinstance(status, str) and bool(status) and status not in _NOT_CANCELLABLE


class ZerodhaCancels:
    """The cancel handling of ``ZerodhaEngine``, which sets the state declared here."""

    _kite: KiteRestClient
    _book: OrderBook
    _max_age_ns: int
    _clock: Callable[[], int]
    _early_cancels: dict[str, tuple[Envelope[Any], CancelRequested]]
    _sweeps: set[str]
    cancelled: int

    if TYPE_CHECKING:
        async def _still_standing(self, event: Envelope[Any],
                                  strategy_id: str | None) -> bool: ...

    def note_cancel(self, event: Envelope[Any], request: CancelRequested) -> bool:
        """Remember a strategy's cancel of an order this engine has not placed (yet): its
        signal may still be on its way (paused by a retry, say) while the strategy saw its
        first broker's order. Applied when the signal comes; forgotten once older than any
        signal the engine would still place. False: not such a cancel."""
        now = self._clock()
        if (request.reason != "strategy" or now - event.ts > self._max_age_ns
                or self._book.by_order_id(request.order_id) is not None):
            return False
        early = self._early_cancels
        if len(early) >= 1000:  # forget the stale ones
            for oid in [o for o, (e, _) in early.items() if now - e.ts > self._max_age_ns]:
                del early[oid]
        early[request.order_id] = (event, request)
        return True

    async def _kill(self, event: Envelope[Any], strategy_id: str | None = None) -> None:
        """Cancel every open order of ours (of ``strategy_id``: it failed) at Kite
        (idempotent: a redelivered event finds them cancelled already). An old event is
        only logged, unless it still stands (no release or later setting since: set while
        the engine was down, or its sweep cut short by a restart, it was only logged, and
        the orders went on working at Kite under a standing kill switch) or its sweep
        began when it was not old: retried through a Kite outage, that sweep is still owed
        however long the outage lasted."""
        old = self._clock() - event.ts > self._max_age_ns
        standing = await self._still_standing(event, strategy_id)
        if old and event.id not in self._sweeps and not standing:
            log_.warning("zerodha.kill_switch_too_old", event_id=event.id, set_at=event.ts,
                         strategy_id=strategy_id)
            return
        self._sweeps.add(event.id)  # (a retry after an outage finds it here)
        mine = None if strategy_id is None else {
            o.broker_order_id for o in self._book.open_orders() if o.strategy_id == strategy_id}
        reason = "kill_switch" if strategy_id is None else "strategy_halted"
        # Orders dated after it (event time) are not its to cancel, as on the paper
        # exchange: its flatten orders (the risk manager dates them just after its market
        # time), at Kite already when it is read late (the engine down, a redelivery), let
        # through as while it stands (``_stopped``); and whatever was placed since, once
        # it was released (or set again) since, or read long after (a group reading the
        # topic afresh: only flatten orders are placed while the engine knows of it). Only
        # while it is recent and stands is a strategy's order of a later tick cancelled:
        # validated before the risk manager read it, placed before this engine did.
        after = getattr(event.data, "market_ts", None)
        if after is None:
            after = event.ts
        cancelled = 0
        for o in await self._kite.orders():
            if our_tag(o) is None or not _cancellable(o.get("status")):
                continue
            broker_id = str(o["order_id"])
            if mine is not None and broker_id not in mine:
                continue
            # None: an order of ours no event records yet (its signal adopts it later)
            order = self._book.get(broker_id)
            if order is not None and order.ts > after and (
                    old or not standing or order.origin == "flatten"):
                continue  # (an exit asked with it or since: the position must close)
            if await self._cancel_at_kite(broker_id, str(o.get("variety") or "regular"),
                                          order, reason) is None:
                cancelled += 1
        self._sweeps.discard(event.id)
        self.cancelled += cancelled
        log_.warning("zerodha.kill_switch" if strategy_id is None else "zerodha.strategy_halted",
                     cancelled=cancelled, strategy_id=strategy_id, alert=True)

    async def _cancel(self, event: Envelope[Any], request: CancelRequested) -> list[Emit]:
        """Ask Kite to cancel the one open order of ours the trader (or a strategy) named.
        An unknown order id, an order already closed (ours or at Kite) or one Kite refuses
        to cancel is left as it is, and a ``CancelRefused`` on the control topic says why;
        a redelivered request finds it closed."""
        ctx: dict[str, Any] = {"event_id": event.id, "order_id": request.order_id,
                               "requested_by": request.requested_by}
        if self._clock() - event.ts > self._max_age_ns:  # a new group reading old requests
            log_.warning("zerodha.cancel_request_too_old", requested_at=event.ts, **ctx)
            return []
        # only orders our own OrderSubmitted records: never one placed by hand at Kite
        order = self._book.by_order_id(request.order_id)
        if order is None and self.note_cancel(event, request):
            log_.info("zerodha.cancel_before_order", **ctx)  # applied when its signal comes
            return []
        if order is None or not is_our_tag(order.tag):
            log_.warning("zerodha.cancel_unknown_order", **ctx)
            return [self._refused(event, request, "no order of this system has that id on "
                                                  "Zerodha (placed by hand, or never placed)")]
        ctx["broker_order_id"] = order.broker_order_id
        if order.terminal:
            log_.warning("zerodha.cancel_order_closed", **ctx)
            if order.leaves:  # cancelled (a redelivered request's, maybe) or rejected: its
                return []  # own event says so
            return [self._refused(event, request, "the order is filled: nothing is left of "
                                                  "it to cancel")]
        try:
            history = await self._kite.order_history(order.broker_order_id)
        except OrderRefused as exc:  # not in Kite's book of today: an earlier day's order
            log_.warning("zerodha.cancel_order_not_at_kite", error=str(exc), **ctx)
            return [self._refused(event, request, f"Kite does not list the order today: {exc}")]
        now = history[-1] if history else {}  # Kite lists an order's states oldest first
        if our_tag(now) != order.tag:
            log_.error("zerodha.cancel_tag_mismatch", kite_tag=now.get("tag"),
                       kite_tags=now.get("tags"), alert=True, **ctx)
            return [self._refused(event, request, f"Kite's order {order.broker_order_id} "
                                                  "carries another tag: not ours to cancel")]
        status = now.get("status")
        if not _cancellable(status):  # filled, cancelled or being cancelled
            log_.warning("zerodha.cancel_order_not_open", status=status, **ctx)
            if status in _FILLED_OR_REJECTED:  # else cancelled, as asked: the sync says so
                return [self._refused(event, request, f"Kite shows the order {status}: "
                                                      "nothing is left of it to cancel")]
            return []
        refusal = await self._cancel_at_kite(order.broker_order_id,
                                             str(now.get("variety") or "regular"), order,
                                             request.reason)
        if refusal is not None:
            return [self._refused(event, request, f"Kite refused the cancel: {refusal}")]
        self.cancelled += 1
        log_.info("zerodha.order_cancel_requested", **ctx)
        return []

    @staticmethod
    def _refused(event: Envelope[Any], request: CancelRequested, message: str) -> Emit:
        refused = CancelRefused(order_id=request.order_id, requested_by=request.requested_by,
                                reason=request.reason, message=message)
        env = new_envelope(refused, id=derive_id(event.id, "cancel_refused"), ts=event.ts,
                           source=SOURCE, key=event.key, broker=BROKER, parent=event)
        return Emit(CONTROL_TOPIC, env)

    async def _cancel_at_kite(self, broker_order_id: str, variety: str,
                              order: TrackedOrder | None, reason: str) -> str | None:
        """Cancel at Kite, ``reason`` recorded on ``order`` for the sync's OrderCancelled;
        Kite's message when it refuses (the order filled or closed meanwhile), else None."""
        previous = order.cancel_reason if order is not None else None
        if order is not None:
            # set before asking: the sync may see CANCELLED before the call returns. Kept on
            # a retryable error, which the cancel may have reached Kite despite.
            order.cancel_reason = reason
        try:
            await self._kite.cancel_order(broker_order_id, variety)
        except OrderRefused as exc:
            if order is not None:
                order.cancel_reason = previous  # whatever closes it, it is not this request
            log_.warning("zerodha.cancel_refused", broker_order_id=broker_order_id,
                         reason=reason, error=str(exc))
            return str(exc)
        return None
