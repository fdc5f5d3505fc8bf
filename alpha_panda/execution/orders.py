"""The order model and its state machine.

    NEW ──► SUBMITTED ──► PARTIALLY_FILLED ──► FILLED
     │          │   │            │  │
     │          │   └──► FILLED   │  └──► CANCELLED / EXPIRED
     │          └──► CANCELLED / EXPIRED / REJECTED
     └──► REJECTED

Every status change goes through ``Order.transition``; a move the table does not have
raises ``IllegalTransition`` (an engine bug must stop the service, not trade on).
Quantities are shares/units; prices and turnover are int paise.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final

from alpha_panda.domain.errors import IllegalTransition
from alpha_panda.domain.events import Origin, derive_id
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.costs import Segment


class OrderStatus(StrEnum):
    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: Final = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)

TRANSITIONS: Final[dict[OrderStatus, frozenset[OrderStatus]]] = {
    OrderStatus.NEW: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED}),
    OrderStatus.SUBMITTED: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.REJECTED,
        }
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
}


_FILLED: Final = OrderStatus.FILLED
_PARTIALLY_FILLED: Final = OrderStatus.PARTIALLY_FILLED


@dataclass(slots=True)
class Order:
    """One order inside the paper exchange (mutable; the engine owns it)."""

    order_id: str
    signal_id: str
    strategy_id: str
    instrument_token: int
    side: Side
    quantity: int
    order_type: OrderType
    product: Product
    validity: Validity
    segment: Segment
    created_ns: int
    arrival_ns: int
    limit_price: int | None = None
    trigger_price: int | None = None
    price_hint: int | None = None
    take_profit: int | None = None
    stop_loss: int | None = None
    parent_order_id: str | None = None
    sibling_order_id: str | None = None  # the other leg of a bracket (one cancels the other)
    origin: Origin = "signal"  # whose order (a bracket leg, the square-off, the kill switch's...)
    status: OrderStatus = OrderStatus.NEW
    filled: int = 0
    turnover: int = 0  # sum of price × quantity over fills, paise
    fills: int = 0
    triggered: bool = False
    rested: bool = False  # on the book behind the market (it trades at its limit)
    volume_carry: Decimal = Decimal(0)  # fraction of a share of volume not yet taken
    last_ts: int = 0  # event time of the last tick this order has been matched against
    expires_ns: int | None = None  # the close of the session it arrived in (DAY and IOC)
    cutoff_ns: int | None = None  # MIS: the square-off cut-off of its session
    killed_ns: int | None = None  # the first kill switch (or halt of its strategy) at/after
    killed_by: str = ""  # its arrival: no fill after it; the cancel's reason
    reduce_only: bool = False  # the strategy's exit (``Signal.reduce_only``)

    @property
    def leaves(self) -> int:
        return self.quantity - self.filled

    @property
    def pair_id(self) -> str:
        """The id a bracket's pair of legs (one cancelling the other) is known by: the lesser
        of the two legs' ids; any other order's own id."""
        sibling = self.sibling_order_id
        return self.order_id if sibling is None else min(self.order_id, sibling)

    @property
    def is_stop(self) -> bool:
        return self.order_type in (OrderType.SL, OrderType.SL_M)

    def transition(self, to: OrderStatus) -> None:
        """Move to ``to``; ``IllegalTransition`` if the state machine has no such edge."""
        if to not in TRANSITIONS[self.status]:
            raise IllegalTransition(
                f"order {self.order_id}: {self.status} -> {to} is not a legal transition"
            )
        self.status = to

    def record_fill(self, quantity: int, price: int) -> None:
        """Add an execution; moves to PARTIALLY_FILLED or FILLED."""
        leaves = self.quantity - self.filled
        if quantity <= 0 or quantity > leaves:
            raise IllegalTransition(
                f"order {self.order_id}: fill of {quantity} with {leaves} leaves"
            )
        self.filled += quantity
        self.turnover += quantity * price
        self.fills += 1
        self.transition(_FILLED if quantity == leaves else _PARTIALLY_FILLED)

    @property
    def average_price(self) -> int:
        """Volume-weighted average fill price, rounded half up to the paisa (0 before a fill)."""
        if self.filled == 0:
            return 0
        return (2 * self.turnover + self.filled) // (2 * self.filled)


_last_derived: tuple[str, str, str] = ("", "", "")


def order_id_for(signal_id: str, stage: str = "order") -> str:
    """``derive_id(signal_id, stage)``, remembering the last answer.

    The risk engine derives a validated signal's order id and the exchange derives the
    same id right after: the second call is then a lookup instead of a hash.
    """
    global _last_derived
    last = _last_derived
    if last[0] == signal_id and last[1] == stage:
        return last[2]
    order_id = derive_id(signal_id, stage)
    _last_derived = (signal_id, stage, order_id)
    return order_id
