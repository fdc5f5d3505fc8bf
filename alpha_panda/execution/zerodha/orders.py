"""Pure Kite order logic: tags, order parameters, and Kite's order-book rows as types.

Nothing here talks to Kite; the adapter hands in plain dicts as the ``kiteconnect``
client returns them and gets typed values back.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

import msgspec

from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import Signal, derive_id
from alpha_panda.domain.values import OrderType, Product, Side, Validity, round_to_paise, to_rupees

TAG_PREFIX: Final = "ap"
TAG_LENGTH: Final = 20  # Kite's maximum tag length
ORDER_STAGE: Final = "zerodha.order"
IST: Final = timezone(timedelta(hours=5, minutes=30), "IST")

OPEN_STATES: Final = frozenset({
    "OPEN", "PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING",
    "MODIFY VALIDATION PENDING", "MODIFY PENDING", "TRIGGER PENDING", "CANCEL PENDING",
    "AMO REQ RECEIVED",
})
TERMINAL_STATES: Final = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})


def order_tag(signal_id: str) -> str:
    """The deterministic Kite tag of the order a signal causes: ``ap`` + 18 hex chars.

    Alphanumeric and exactly 20 characters (Kite's limit); the same signal always
    gives the same tag, which is how a retried signal finds the order it already placed.
    """
    digest = hashlib.blake2b(signal_id.encode(), digest_size=9).hexdigest()
    return TAG_PREFIX + digest


def is_our_tag(tag: str | None) -> bool:
    return bool(tag) and len(tag or "") == TAG_LENGTH and (tag or "").startswith(TAG_PREFIX)


def our_tag(row: dict[str, Any]) -> str | None:
    """Our tag on a Kite order row (``orders()``, ``order_history()``, a postback), else None.

    Looked for in ``tags`` as well as ``tag``: Kite adds tags of its own (its market
    protection's, ``mktp``) and keeps ``tags`` in no guaranteed order, so ``tag`` (their
    first) need not be ours."""
    tags = row.get("tags")
    for tag in [row.get("tag"), *(tags if isinstance(tags, list) else ())]:
        if isinstance(tag, str) and is_our_tag(tag):
            return tag
    return None


def order_id_for(signal_id: str) -> str:
    """Our order id for a signal (stable across retries and restarts)."""
    return derive_id(signal_id, ORDER_STAGE)


def _rupees(paise: int) -> str:
    return format(to_rupees(paise), "f")


def kite_order_params(signal: Signal, *, exchange: str, tradingsymbol: str, tag: str,
                      market_protection: int = -1, variety: str = "regular") -> dict[str, Any]:
    """Kite ``place_order`` parameters for a signal (prices as exact rupee strings).

    MARKET and SL-M orders carry ``market_protection`` as Kite requires; LIMIT and SL
    need ``limit_price``; SL and SL-M need ``trigger_price``. A bracket (``take_profit`` or
    ``stop_loss``) is a ``ValidationError``: Kite has none, and the paper exchange's legs
    have no live counterpart.
    """
    if signal.quantity <= 0:
        raise ValidationError(f"order quantity must be positive, got {signal.quantity}")
    if signal.take_profit is not None or signal.stop_loss is not None:
        # Placing the entry alone would leave the position without the exits the strategy
        # asked for: refused, never placed half.
        raise ValidationError(
            "Kite has no bracket orders (Zerodha discontinued them): a signal with "
            "take_profit/stop_loss is not placed live; send the exits as their own orders")
    params: dict[str, Any] = {
        "variety": variety, "exchange": exchange, "tradingsymbol": tradingsymbol,
        "transaction_type": signal.side.value, "quantity": signal.quantity,
        "product": signal.product.value, "order_type": signal.order_type.value,
        "validity": signal.validity.value, "tag": tag,
    }
    if signal.order_type in (OrderType.LIMIT, OrderType.SL):
        if signal.limit_price is None:
            raise ValidationError(f"{signal.order_type.value} order needs a limit_price")
        params["price"] = _rupees(signal.limit_price)
    if signal.order_type in (OrderType.SL, OrderType.SL_M):
        if signal.trigger_price is None:
            raise ValidationError(f"{signal.order_type.value} order needs a trigger_price")
        params["trigger_price"] = _rupees(signal.trigger_price)
    if signal.order_type in (OrderType.MARKET, OrderType.SL_M):
        params["market_protection"] = market_protection
        if signal.limit_price is not None:  # (the strategy meant another type)
            raise ValidationError(f"{signal.order_type.value} orders take no limit_price")
    if signal.order_type in (OrderType.MARKET, OrderType.LIMIT) and signal.trigger_price is not None:
        raise ValidationError(f"{signal.order_type.value} orders take no trigger_price")
    return params


def _paise(value: Any) -> int:
    return round_to_paise(Decimal(str(value or 0)))


class KiteOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One row of Kite's order book, prices in paise."""

    order_id: str
    status: str
    tag: str | None
    instrument_token: int
    exchange: str
    tradingsymbol: str
    side: Side
    quantity: int
    filled_quantity: int
    pending_quantity: int
    cancelled_quantity: int
    average_price: int
    order_type: str
    product: str
    validity: str
    status_message: str

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES


def kite_order(row: dict[str, Any]) -> KiteOrder:
    """Parse an order-book row (``orders()``, ``order_history()`` or a postback)."""
    try:
        return KiteOrder(
            order_id=str(row["order_id"]), status=str(row["status"]),
            tag=our_tag(row) or row.get("tag") or None,
            instrument_token=int(row.get("instrument_token") or 0),
            exchange=str(row.get("exchange") or ""), tradingsymbol=str(row.get("tradingsymbol") or ""),
            side=Side(row["transaction_type"]), quantity=int(row["quantity"]),
            filled_quantity=int(row.get("filled_quantity") or 0),
            pending_quantity=int(row.get("pending_quantity") or 0),
            cancelled_quantity=int(row.get("cancelled_quantity") or 0),
            average_price=_paise(row.get("average_price")), order_type=str(row.get("order_type")),
            product=str(row.get("product") or Product.CNC.value),
            validity=str(row.get("validity") or Validity.DAY.value),
            status_message=str(row.get("status_message") or row.get("status_message_raw") or ""))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValidationError(f"malformed Kite order row: {exc!r}") from exc


class KiteTrade(msgspec.Struct, frozen=True, kw_only=True):
    """One execution from Kite's trade book, price in paise, time in UTC ns (0: unknown)."""

    trade_id: str
    order_id: str
    instrument_token: int
    side: Side
    quantity: int
    price: int
    fill_ns: int = 0


def ist_wall_ns(value: Any) -> int:
    """Kite's REST times are IST wall clock without a zone ('2026-11-24 09:15:07', or the
    naive datetime kiteconnect makes of it): the UTC instant in ns, 0 when absent."""
    if not value:
        return 0
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=IST)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def kite_trade(row: dict[str, Any]) -> KiteTrade:
    try:
        return KiteTrade(trade_id=str(row["trade_id"]), order_id=str(row["order_id"]),
                         instrument_token=int(row.get("instrument_token") or 0),
                         side=Side(row["transaction_type"]), quantity=int(row["quantity"]),
                         price=_paise(row.get("average_price", row.get("price"))),
                         fill_ns=ist_wall_ns(row.get("fill_timestamp")
                                             or row.get("exchange_timestamp")))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValidationError(f"malformed Kite trade row: {exc!r}") from exc
