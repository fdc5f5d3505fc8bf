"""Zerodha's charges, from a versioned rate card in ``alpha_panda/data/charges/``.

Rates live in data files named ``zerodha_<effective date>.json``; ``CostModel.load``
picks the newest card in force on a given date. Every amount is computed exactly in paise
and each component of an order is rounded to the paisa, half up; GST is 18% of the
*rounded* brokerage + exchange transaction + SEBI charges, rounded again. STT is the
exception: the exchange computes it per client, scrip and day and rounds it to the rupee,
half up (Zerodha's calculator shows ₹3 on an intraday sell of ₹10,100: 0.025% is ₹2.525).
``round_trip`` (the calculator: each leg its scrip's only trade that day) rounds it so; an
order's and a fill's charges keep it to the paisa, the day's rounding being left to what
groups the day's fills (not modelled yet: within ₹0.50 a scrip a day). The card's Decimal rates are taken as exact
fractions of integers for the charges of each order (``_Fractions``): the same figures
as Decimal arithmetic in under half the time (3.1 against 8.2 us an order, 2026-12-05; a
fill's charges took 7.6% of the CPU of the process of the paper engine and the portfolio
in ``bench/pipeline.py``'s split run).

Brokerage is charged per executed *order* (``min(cap, pct × turnover)`` or a flat fee),
so an order filled in pieces pays it once: ``fill_charges`` charges a fill the
difference between the order's charges after and before it, and the fills of an order
always add up to the charges of the whole order, to the paisa. (The paper exchange charges
CNC fills through ``execution.netting`` instead: a CNC buy and sell of one stock on one
day are charged at intraday rates, which moves charges between that day's orders.)

The depository (DP) charge, ``dp_charge_rupees`` in a segment of the card (equity
delivery), is not an order charge: Zerodha debits it on the ledger, once per scrip per day
on which shares are sold from holdings, whatever the quantity; ``dp_charge`` gives it with
its GST. Nor is the auto square-off charge, ``auto_squareoff_rupees`` (the intraday
segments): Zerodha's call-and-trade fee on each order it places to square off an intraday
position left open at the cut-off; ``auto_squareoff_charge`` gives it with its GST.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from alpha_panda.domain.clock import today_ist
from alpha_panda.domain.errors import ConfigurationError, ValidationError
from alpha_panda.domain.events import Charges
from alpha_panda.domain.values import Product, Side

CHARGES_DIR = Path(__file__).resolve().parent.parent / "data" / "charges"
SQUAREOFF_ORDER_MAX = 30_000  # shares Zerodha squares off in one order (equity)
_HUNDRED = Decimal(100)
_CRORE_PAISE = Decimal(10_000_000 * 100)


class Segment(StrEnum):
    """The rate-card segments."""

    EQUITY_DELIVERY = "equity_delivery"
    EQUITY_INTRADAY = "equity_intraday"
    FUTURES = "futures"
    OPTIONS = "options"

    @classmethod
    def for_product(cls, product: Product, *, options: bool = False) -> Segment:
        """The usual segment of a Kite product: CNC delivery, MIS intraday, NRML F&O."""
        if options:
            return cls.OPTIONS
        return {Product.CNC: cls.EQUITY_DELIVERY, Product.MIS: cls.EQUITY_INTRADAY}.get(
            product, cls.FUTURES
        )


def _paise(amount: Decimal) -> int:
    return int(amount.to_integral_value(rounding=ROUND_HALF_UP))


Ratio = tuple[int, int]  # an exact rate: (numerator, denominator > 0)


def _percent(p: Decimal) -> Ratio:
    """``p`` percent as an exact fraction."""
    n, d = p.as_integer_ratio()
    return n, d * 100


def _times(amount: int, rate: Ratio) -> int:
    """``amount × rate`` rounded to the integer, half away from zero: ``_paise`` of the
    Decimal product, exactly, in integers."""
    n, d = rate
    a = amount * n
    if a >= 0:
        return (2 * a + d) // (2 * d)
    return -((d - 2 * a) // (2 * d))


@dataclass(frozen=True, slots=True)
class SegmentRates:
    """One segment's rates; percentages as Decimal percent, fees in paise."""

    brokerage_percent: Decimal | None
    brokerage_cap: int | None
    brokerage_flat: int | None
    stt_buy_percent: Decimal
    stt_sell_percent: Decimal
    exchange_txn_percent: dict[str, Decimal]
    stamp_buy_percent: Decimal
    dp_charge: int = 0  # paise per scrip per day sold from holdings, before GST
    auto_squareoff: int = 0  # paise per square-off order of an intraday position, before GST

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> SegmentRates:
        def opt(key: str) -> Decimal | None:
            value = raw.get(key)
            return None if value is None else Decimal(str(value))

        def rupees(key: str) -> int | None:
            value = opt(key)
            return None if value is None else _paise(value * _HUNDRED)

        return cls(
            brokerage_percent=opt("brokerage_percent"),
            brokerage_cap=rupees("brokerage_cap_rupees"),
            brokerage_flat=rupees("brokerage_flat_rupees"),
            stt_buy_percent=Decimal(str(raw["stt_buy_percent"])),
            stt_sell_percent=Decimal(str(raw["stt_sell_percent"])),
            exchange_txn_percent={k: Decimal(str(v)) for k, v in raw["exchange_txn_percent"].items()},
            stamp_buy_percent=Decimal(str(raw["stamp_buy_percent"])),
            dp_charge=rupees("dp_charge_rupees") or 0,
            auto_squareoff=rupees("auto_squareoff_rupees") or 0,
        )


@dataclass(frozen=True, slots=True)
class _Fractions:
    """One segment's order rates (``SegmentRates``) as exact fractions of turnover."""

    brokerage: Ratio
    brokerage_cap: int | None
    brokerage_flat: int | None
    stt_buy: Ratio
    stt_sell: Ratio
    exchange_txn: dict[str, Ratio]
    stamp_buy: Ratio

    @classmethod
    def of(cls, r: SegmentRates) -> _Fractions:
        return cls(
            brokerage=_percent(r.brokerage_percent or Decimal(0)),
            brokerage_cap=r.brokerage_cap, brokerage_flat=r.brokerage_flat,
            stt_buy=_percent(r.stt_buy_percent), stt_sell=_percent(r.stt_sell_percent),
            exchange_txn={k: _percent(v) for k, v in r.exchange_txn_percent.items()},
            stamp_buy=_percent(r.stamp_buy_percent),
        )


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A buy and a sell of the same quantity (the brokerage calculator), all in paise."""

    turnover: int
    buy: Charges
    sell: Charges
    gross_pnl: int

    @property
    def total_charges(self) -> int:
        return self.buy.total + self.sell.total

    @property
    def net_pnl(self) -> int:
        return self.gross_pnl - self.total_charges


class CostModel:
    """Zerodha's charges for one rate card. Pure: no I/O after ``load``."""

    def __init__(
        self, version: str, segments: dict[Segment, SegmentRates], gst_percent: Decimal,
        sebi_rupees_per_crore: Decimal,
    ) -> None:
        self.version = version
        self._segments = segments
        self._gst = gst_percent
        self._fractions = {k: _Fractions.of(v) for k, v in segments.items()}
        # paise per crore (of rupees) of turnover, as a share of turnover in paise
        n, d = (sebi_rupees_per_crore * _HUNDRED).as_integer_ratio()
        self._sebi_fraction: Ratio = (n, d * int(_CRORE_PAISE))
        self._gst_fraction = _percent(gst_percent)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CostModel:
        """Build from a rate card's parsed JSON; a missing key is a ConfigurationError."""
        try:
            segments = {Segment(k): SegmentRates.parse(v) for k, v in raw["segments"].items()}
            return cls(
                str(raw["version"]), segments, Decimal(str(raw["gst_percent"])),
                Decimal(str(raw["sebi_rupees_per_crore"])),
            )
        except (KeyError, ValueError, ArithmeticError) as exc:
            raise ConfigurationError(f"bad charges rate card: {exc!r}") from exc

    @classmethod
    def load(cls, as_of: date | None = None, path: Path | None = None) -> CostModel:
        """The rate card in ``path``, or the newest one in force on ``as_of`` (default:
        today, IST). Not simply the newest file: a card is added when new rates are announced,
        often weeks before they apply (the Budget's STT of 1 February, from 1 April), and the
        live engine's charges and ``alpha-panda charges`` would charge them early."""
        if path is None:
            day = (as_of or today_ist()).isoformat()
            cards = [p for p in sorted(CHARGES_DIR.glob("zerodha_*.json"))
                     if p.stem.split("_", 1)[1] <= day]
            if not cards:
                raise ConfigurationError(f"no Zerodha rate card in {CHARGES_DIR} for {as_of}")
            path = cards[-1]
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"cannot read rate card {path}: {exc}") from exc
        return cls.from_dict(raw)

    def rates(self, segment: Segment) -> SegmentRates:
        return self._segments[segment]

    def dp_charge(self, segment: Segment = Segment.EQUITY_DELIVERY) -> int:
        """The DP charge of one scrip sold from holdings on one day, GST included, in paise
        (₹13 + 18% = ₹15.34 on the 2026-04-01 card, ₹15.93 on the 2024-10-01 one; 0 for a segment without one)."""
        dp = self._segments[segment].dp_charge
        return _paise(Decimal(dp) * (_HUNDRED + self._gst) / _HUNDRED) if dp else 0

    def auto_squareoff_charge(self, segment: Segment, quantity: int) -> int:
        """Zerodha's call-and-trade charge for squaring off an intraday position of
        ``quantity`` at the cut-off, GST included, in paise: ₹50 + 18% = ₹59 per order,
        an order taking at most ``SQUAREOFF_ORDER_MAX`` shares (0 for a segment without it)."""
        fee = self._segments[segment].auto_squareoff
        if not fee or quantity <= 0:
            return 0
        # equity is squared off 30,000 shares an order; F&O up to the contract's freeze
        # quantity, which the card does not know: one order
        orders = -(-quantity // SQUAREOFF_ORDER_MAX) if segment is Segment.EQUITY_INTRADAY else 1
        return _paise(Decimal(fee * orders) * (_HUNDRED + self._gst) / _HUNDRED)

    def order_charges(
        self, segment: Segment, side: Side, turnover: int, exchange: str = "NSE", *,
        executed: bool = True,
    ) -> Charges:
        """Charges of one executed order whose fills total ``turnover`` paise."""
        if turnover < 0:
            raise ValidationError(f"negative turnover {turnover}")
        if turnover == 0 or not executed:
            return Charges()
        r = self._fractions[segment]
        t = turnover
        if r.brokerage_flat is not None:
            brokerage = r.brokerage_flat
        else:
            brokerage = _times(t, r.brokerage)
            if r.brokerage_cap is not None and brokerage > r.brokerage_cap:
                brokerage = r.brokerage_cap
        try:
            txn = r.exchange_txn[exchange]
        except KeyError as exc:
            raise ValidationError(f"no {exchange} transaction charge for {segment}") from exc
        exchange_txn = _times(t, txn)
        sebi = _times(t, self._sebi_fraction)
        buy = side is Side.BUY
        return Charges(
            brokerage=brokerage,
            stt=_times(t, r.stt_buy if buy else r.stt_sell),
            exchange_txn=exchange_txn,
            sebi=sebi,
            stamp_duty=_times(t, r.stamp_buy) if buy else 0,
            gst=_times(brokerage + exchange_txn + sebi, self._gst_fraction),
        )

    def charges(
        self, segment: Segment, side: Side, price: int, quantity: int, exchange: str = "NSE"
    ) -> Charges:
        """Charges of one order executed in full at ``price`` paise for ``quantity``."""
        return self.order_charges(segment, side, price * quantity, exchange)

    def fill_charges(
        self, segment: Segment, side: Side, turnover_before: int, turnover_after: int,
        exchange: str = "NSE",
    ) -> Charges:
        """Charges of one fill: the order's charges after it minus before it, item by item."""
        after = self.order_charges(segment, side, turnover_after, exchange)
        before = self.order_charges(segment, side, turnover_before, exchange)
        return Charges(
            brokerage=after.brokerage - before.brokerage,
            stt=after.stt - before.stt,
            exchange_txn=after.exchange_txn - before.exchange_txn,
            sebi=after.sebi - before.sebi,
            stamp_duty=after.stamp_duty - before.stamp_duty,
            gst=after.gst - before.gst,
        )

    def round_trip(
        self, segment: Segment, buy: int, sell: int, quantity: int, exchange: str = "NSE"
    ) -> RoundTrip:
        """Buy ``quantity`` at ``buy`` and sell it at ``sell`` (paise), one order each.

        In equity delivery the sell is taken to be on a later day, from holdings: it pays
        the DP charge too (a same-day CNC round trip is charged as ``EQUITY_INTRADAY``).
        Each leg is its scrip's only trade of its day, so its STT is the day's, rounded to
        the rupee as on the contract note (delivery: the buy's day and the sell's each;
        Zerodha's calculator rounds their sum once, which can differ by ₹1)."""
        if quantity <= 0:
            raise ValidationError(f"quantity must be positive, got {quantity}")
        legs = []
        for side, price in ((Side.BUY, buy), (Side.SELL, sell)):
            leg = self.charges(segment, side, price, quantity, exchange)
            legs.append(msgspec.structs.replace(
                leg, stt=self._day_stt(segment, side, price * quantity)))
        dp = self.dp_charge(segment)
        if dp:
            legs[1] = msgspec.structs.replace(legs[1], dp=dp)
        return RoundTrip(
            turnover=(buy + sell) * quantity,
            buy=legs[0],
            sell=legs[1],
            gross_pnl=(sell - buy) * quantity,
        )

    def _day_stt(self, segment: Segment, side: Side, turnover: int) -> int:
        """The STT of a scrip's day whose only trade on ``side`` is ``turnover`` paise, in
        paise: the exact STT rounded to the rupee, half up (₹2.525 is ₹3, ₹0.4995 is ₹0)."""
        r = self._fractions[segment]
        n, d = r.stt_buy if side is Side.BUY else r.stt_sell
        return _times(turnover, (n, d * 100)) * 100


class RateCards:
    """Every shipped rate card by the date it took effect: ``on(day)`` is the card in force
    that day (a trade before the oldest card is charged by the oldest). A backtest of 2025
    ticks pays 2025's charges, not today's."""

    def __init__(self, cards: Sequence[tuple[date, CostModel]]) -> None:
        if not cards:
            raise ConfigurationError(f"no Zerodha rate card in {CHARGES_DIR}")
        ordered = sorted(cards, key=lambda c: c[0])
        self._from = [d for d, _ in ordered]
        self._models = [m for _, m in ordered]

    @classmethod
    def load(cls) -> RateCards:
        return cls([(date.fromisoformat(p.stem.split("_", 1)[1]), CostModel.load(path=p))
                    for p in sorted(CHARGES_DIR.glob("zerodha_*.json"))])

    @classmethod
    def fixed(cls, model: CostModel) -> RateCards:
        """One card for every day (a model handed in: tests, what-ifs)."""
        return cls([(date.min, model)])

    def on(self, day: date) -> CostModel:
        return self._models[max(0, bisect_right(self._from, day) - 1)]
