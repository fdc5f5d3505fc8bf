"""The write side the API may touch: the operator's controls, implemented by the running system.

The read API never writes to the log or the cache itself; an operator action goes through
``Control``, which the composition root implements (``services.control``). A process
without a pipeline (the API alone) passes no ``Control`` and the endpoints answer 503.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from alpha_panda.domain.errors import ValidationError
from alpha_panda.readmodel.views import OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class KillSwitchRecord:
    """A kill switch as last set: what its risk manager applies, now or when it starts."""

    active: bool
    flatten: bool
    set_at: int  # ns since epoch


@dataclass(frozen=True, slots=True)
class CancelRecord:
    """A trader's cancel request, as written to the broker's control topic."""

    order_id: str
    requested_at: int  # ns since epoch
    market_ts: int | None  # event time of the latest tick then: where the engine cancels


@dataclass(frozen=True, slots=True)
class HaltRecord:
    """A trader's halt of one strategy on one broker, as written to its control topic."""

    strategy_id: str
    active: bool
    flatten: bool
    requested_at: int  # ns since epoch
    market_ts: int | None  # event time of the latest tick then: where its orders stop


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order as its events on the log leave it."""

    order_id: str
    strategy_id: str
    status: str  # SUBMITTED, PARTIALLY_FILLED, FILLED, REJECTED, CANCELLED

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


MAX_ORDER_ID = 64  # characters; also what an error message echoes of a longer one at most


def check_order_id(order_id: str) -> None:
    """``ValidationError`` unless ``order_id`` can be an order's id (printable, no spaces,
    at most ``MAX_ORDER_ID`` characters). The message echoes only the first
    ``MAX_ORDER_ID`` characters of a longer one (a 5,000-character id came back whole)."""
    if len(order_id) > MAX_ORDER_ID:
        raise ValidationError(f"not an order id: {order_id[:MAX_ORDER_ID]!r}… ({len(order_id)} "
                              f"characters; an order id has at most {MAX_ORDER_ID})")
    if not order_id or not order_id.isprintable() or " " in order_id:
        raise ValidationError(f"not an order id: {order_id!r}")


class Control(Protocol):
    """Operator controls of a running pipeline."""

    async def set_kill_switch(self, broker: str, active: bool, flatten: bool) -> KillSwitchRecord:
        """Stop (``active=True``) or resume new orders on ``broker`` (``paper`` or ``zerodha``);
        returns the switch as set (what ``kill_switch`` reads back).

        With ``flatten`` (only meaningful when activating), also close every open position of
        that broker at market. Raises ``ValidationError`` / ``ConfigurationError`` when the
        request cannot be honoured (e.g. the broker is not running in this process).
        """
        ...

    async def kill_switch(self, broker: str) -> KillSwitchRecord | None:
        """``broker``'s kill switch as last set (None: never), whether or not its risk
        manager runs in this process."""
        ...

    async def halt_strategy(self, broker: str, strategy_id: str, active: bool,
                            flatten: bool) -> HaltRecord:
        """Take one strategy out of service on ``broker`` (``active=True``: its open orders
        are cancelled, its new signals go nowhere, and with ``flatten`` its positions are
        closed at market) or put it back (``active=False``)."""
        ...

    async def cancel_order(self, broker: str, order_id: str) -> CancelRecord:
        """Ask ``broker``'s trading engine to cancel what is left of one order (reason
        ``user``). Asynchronous: the engine cancels it, or finds it filled first; its
        ``OrderCancelled`` is the answer. Raises ``ValidationError`` for an unknown broker
        or something that is not an order id (``check_order_id``)."""
        ...
