"""Control events on the paper exchange: the trader's or a strategy's cancel of an order,
the kill switch and strategy halts, the expiry of DAY orders, and a rebuild's record of what
the live engine did with them. Each stops orders as of its event time, whatever order the
engine reads it in: an order processed after the event is stopped as it is registered
(``_stopped_before``). Kept apart from the matching engine: none of it runs per tick.
``PaperExchange`` inherits this; the state it reads is the exchange's own.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable
from typing import TYPE_CHECKING

from alpha_panda.domain.events import OrderCancelled, OrderFilled, Payload

if TYPE_CHECKING:
    from collections import OrderedDict
    from datetime import date

    from alpha_panda.execution.config import ExecutionConfig
    from alpha_panda.execution.orders import Order

# cancellations a control event causes (the rest a rebuild's matching makes again)
_BY_CONTROL = frozenset({"user", "strategy", "kill_switch", "strategy_halted"})
# and those another order's processing makes (a rebuild processes that order later than the
# ticks after it): a leg cut by an exit (held from then until the exit cuts it again in the
# rebuild, ``_fit_legs``), an exit a leg's fill left nothing to sell (``_fit_exits``)
_BY_ORDER = frozenset({"exit", "reduce_only"})


class ControlEvents:
    """The control part of ``PaperExchange`` (a mixin: it uses the exchange's state)."""

    if TYPE_CHECKING:
        config: ExecutionConfig
        _orders: dict[str, Order]
        _closed_ids: OrderedDict[str, None]
        _late: dict[tuple[str, int, date], None]
        _kills: dict[str | None, list[int]]
        _halts: dict[str, list[int]]
        _user_cancels: dict[str, tuple[int, str]]
        _recorded_cancels: dict[str, tuple[int, str]]
        _recorded_fills: dict[str, int]

        def open_orders(self, instrument_token: int | None = None) -> list[Order]: ...
        def _cancel(self, order: Order, reason: str, ts: int, out: list[Payload]) -> None: ...
        def _squareoff_late(self, out: list[Payload]) -> None: ...

    def cancel(self, order_id: str, at_ns: int, reason: str = "user") -> list[Payload]:
        """The trader's (or, ``reason`` ``strategy``, its strategy's) cancel of one order,
        asked at ``at_ns`` in event time (its placing time, if later): what is left of it
        fills on no tick after that and is cancelled (``_stop``); nothing if it is closed
        already (filled first: the cancel lost the race, as at an exchange). An order not
        seen yet (a rebuild replays the control topic before the signals) is stopped as it
        arrives."""
        order = self._orders.get(order_id)
        if order is None:
            if order_id not in self._closed_ids:  # (closed long ago: nothing to remember)
                known = self._user_cancels.get(order_id)
                if known is None or at_ns < known[0]:
                    self._user_cancels[order_id] = (at_ns, reason)
            return []
        if not order.status.is_open:
            return []
        out: list[Payload] = []
        self._stop(order, max(at_ns, order.created_ns), reason, out)
        if self._late:
            self._squareoff_late(out)
        return out

    def _stop(self, order: Order, at: int, reason: str, out: list[Payload]) -> None:
        """A control event stops an open order as of ``at``: it fills on no tick after it.
        If this engine already matched it on a later tick (it read the event late), it is
        cancelled now, at that tick (a rebuild follows the record: ``recorded``); otherwise
        on its first tick after ``at`` (``_match``), so that a tick by ``at`` not yet read
        may still fill it, as it does in a rebuild. A bracket entry's legs may catch up."""
        if order.killed_ns is None or at < order.killed_ns:
            order.killed_ns, order.killed_by = at, reason
        if order.last_ts > order.killed_ns:
            self._cancel(order, order.killed_by, order.last_ts, out)

    def recorded(self, events: Iterable[Payload]) -> None:
        """What this engine recorded before a restart (its ``orders.cancelled`` and
        ``orders.filled`` events), for the rebuild that follows; ``()`` once it is done.

        A control event (kill switch, halt, the trader's cancel) stops orders as of its
        market time, but the live engine applied it when it read it: an order it had
        matched past that time kept those fills, or was cancelled at the latest of them.
        A rebuild, which reads the control topic before any signal, follows the record."""
        cancels: dict[str, tuple[int, str]] = {}
        fills: dict[str, int] = {}
        for e in events:
            if isinstance(e, OrderCancelled) and (e.reason in _BY_CONTROL
                                                  or e.reason in _BY_ORDER):
                cancels[e.order_id] = (e.ts, e.reason)
            elif isinstance(e, OrderFilled):
                fills[e.order_id] = max(fills.get(e.order_id, -1), e.ts)
        self._recorded_cancels, self._recorded_fills = cancels, fills

    def kill(self, at_ns: int, strategy_id: str | None = None, *,
             keep_exits: bool = False) -> list[Payload]:
        """The kill switch, set at ``at_ns`` in event time (or, with ``strategy_id``, that
        strategy's halt): every order (of the strategy) placed by then is cancelled (reason
        ``kill_switch``, ``strategy_halted``) and fills on no tick after it, including one
        still on its way (latency), one processed later (a lagging engine, a rebuild, which
        replays the control topic before the signals) and a bracket's legs placed later.
        Orders placed after it are not touched: the risk manager lets only the flatten
        orders through (placed just after it), and a halted strategy signals no more.

        ``keep_exits`` (a halt without flatten: the strategy raised, or the trader halted
        it and keeps its positions): only the strategy's own orders are stopped, and the
        system's work on: a bracket's stop-loss and target keep protecting what filled.
        """
        if keep_exits:
            assert strategy_id is not None
            kills = self._halts.setdefault(strategy_id, [])
        else:
            kills = self._kills.setdefault(strategy_id, [])
        if at_ns in kills:
            return []  # redelivered
        insort(kills, at_ns)
        reason = "kill_switch" if strategy_id is None else "strategy_halted"
        out: list[Payload] = []
        for order in self.open_orders():
            if (order.created_ns <= at_ns and order.status.is_open
                    and strategy_id in (None, order.strategy_id)
                    and not (keep_exits and order.origin != "signal")):
                self._stop(order, at_ns, reason, out)
        if self._late:
            self._squareoff_late(out)
        return out

    def expire(self, now_ns: int) -> list[Payload]:
        """Expire DAY orders whose session closed at or before ``now_ns`` (end of data, timers)."""
        out: list[Payload] = []
        if not self.config.expire_day_orders:
            return out
        for order in self.open_orders():
            close = order.expires_ns
            if close is not None and close <= now_ns and order.status.is_open:
                self._cancel(order, "expired", close, out)
        if self._late:
            self._squareoff_late(out)
        return out

    def _stopped_before(self, order: Order) -> None:
        """A kill switch, a halt of its strategy or the trader's cancel processed before
        the order (a rebuild replays the control topic before the signals) that stops it:
        its ``killed_ns``. In a rebuild, what the live engine recorded decides: the cancel
        it made, at its time; and no stop before a fill it made later (it read the control
        event late, after the order had filled)."""
        recorded = self._recorded_cancels.pop(order.order_id, None)
        if recorded is not None:
            order.killed_ns, order.killed_by = recorded
            return
        filled_until = self._recorded_fills.get(order.order_id, -1)
        stops: list[tuple[int, str]] = []
        for kills, reason in ((self._kills.get(None), "kill_switch"),
                              (self._kills.get(order.strategy_id), "strategy_halted"),
                              (self._halts.get(order.strategy_id) if order.origin == "signal"
                               else None, "strategy_halted")):
            if kills and kills[-1] >= order.created_ns:
                stops.append((kills[bisect_left(kills, order.created_ns)], reason))
        if self._user_cancels:
            asked = self._user_cancels.pop(order.order_id, None)
            if asked is not None:
                stops.append((max(asked[0], order.created_ns), asked[1]))
        for at, reason in stops:
            if at >= filled_until and (order.killed_ns is None or at < order.killed_ns):
                order.killed_ns, order.killed_by = at, reason
