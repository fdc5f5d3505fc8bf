"""Value types shared by every stage.

Prices and money are integers in paise (1 rupee = 100 paise): exact, fast, and
hashable. NSE equity and F&O tick sizes (0.01 to 5 rupees, ``execution.market.TickSizes``)
are whole paise, so every price on the exchange grid is an integer here. Quantities are
integer shares/units.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import NewType

from alpha_panda.domain.errors import ValidationError

InstrumentToken = NewType("InstrumentToken", int)
Paise = int
"""An exact amount or price in paise."""

PAISE_PER_RUPEE = 100
TICK_SIZE_PAISE = 5
"""NSE's tick size for every equity until June 2024 (0.05 rupee), and the default of code
that knows no day or price band: the exchange's is ``execution.market.TickSizes``'s."""


class Broker(StrEnum):
    PAPER = "paper"
    ZERODHA = "zerodha"


BROKERS: tuple[Broker, ...] = (Broker.PAPER, Broker.ZERODHA)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    """Kite's order types: SL is stop-limit, SL-M is stop-market."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"
    SL_M = "SL-M"


class Product(StrEnum):
    CNC = "CNC"  # cash and carry: equity delivery
    MIS = "MIS"  # intraday, squared off before the close
    NRML = "NRML"  # F&O carry-forward


class Validity(StrEnum):
    DAY = "DAY"
    IOC = "IOC"


def reduces(held: int, delta: int) -> bool:
    """A signed order of ``delta`` takes a position of ``held`` toward zero without crossing it."""
    after = held + delta
    return abs(after) <= abs(held) and (after == 0 or (after > 0) == (held > 0))


def to_paise(value: str | float | Decimal) -> Paise:
    """Convert a rupee amount to paise, exactly; more than two decimals is an error.

    Floats are converted through their shortest repr, so ``to_paise(101.05) == 10105``.
    """
    try:
        rupees = value if isinstance(value, Decimal) else Decimal(str(value))
        paise = rupees * PAISE_PER_RUPEE
    except (InvalidOperation, ValueError) as exc:
        raise ValidationError(f"not a rupee amount: {value!r}") from exc
    if not paise.is_finite():
        raise ValidationError(f"not a finite rupee amount: {value!r}")
    if paise != paise.to_integral_value():
        raise ValidationError(f"rupee amount {value!r} has fractions of a paisa")
    return int(paise)


def round_to_paise(rupees: Decimal) -> Paise:
    """Round a Decimal rupee amount to the nearest paisa (half to even), as int paise."""
    return int((rupees * PAISE_PER_RUPEE).to_integral_value(rounding=ROUND_HALF_EVEN))


def to_rupees(paise: Paise) -> Decimal:
    """Exact rupee Decimal for an amount in paise (for display and JSON)."""
    return Decimal(paise).scaleb(-2)


def format_rupees(paise: Paise) -> str:
    """'₹1,234.50' style text, exact, grouped the Indian way as the dashboard and Kite show
    amounts: '₹5,76,225.00' (5 lakh 76 thousand), '₹1,23,45,678.00'."""
    sign = "-" if paise < 0 else ""
    whole, frac = divmod(abs(paise), PAISE_PER_RUPEE)
    digits = str(whole)
    head, tail = digits[:-3], digits[-3:]
    pairs = []
    while head:
        head, pair = head[:-2], head[-2:]
        pairs.append(pair)
    grouped = ",".join([*reversed(pairs), tail])
    return f"{sign}₹{grouped}.{frac:02d}"


def on_tick_grid(price: Paise, tick_size: Paise = TICK_SIZE_PAISE) -> bool:
    return price % tick_size == 0
