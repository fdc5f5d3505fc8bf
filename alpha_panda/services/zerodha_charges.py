"""Zerodha's charges of a live fill (``KiteCharges``), which the order sync applies.

Apart from the engine: the charges are the rate card's and the CNC netting book's, not the
placing of orders; the engine's composition root hands them to the sync.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from datetime import date

import structlog

from alpha_panda.adapters.zerodha.instruments import InstrumentMaster
from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import NO_CHARGES, Charges, OrderFilled
from alpha_panda.domain.values import Product
from alpha_panda.execution.costs import CostModel, RateCards, Segment
from alpha_panda.execution.netting import CncNetting
from alpha_panda.execution.zerodha.reconcile import TrackedOrder

log_ = structlog.get_logger(__name__)
_BOOKED_KEPT = 200_000


class KiteCharges:
    """Zerodha's charges of a live fill from the rate card, as the paper exchange charges
    its own: per order, as contract notes show, and a CNC fill through its IST day's
    netting book (``CncNetting``), so a CNC buy and sell of one stock on one day pay
    intraday rates and only what does not net off pays delivery's (and, once a day, DP)."""

    def __init__(self, costs: CostModel | RateCards, instruments: InstrumentMaster) -> None:
        # Each fill at the card in force on its IST day, as paper's: one card for the life
        # of the process kept the old rates past a new card's first day (a run from 31
        # March into 1 April 2026 charged a futures sell 0.02% STT, not 0.05%).
        self._cards = RateCards.fixed(costs) if isinstance(costs, CostModel) else costs
        self._instruments = instruments
        self._netting: dict[tuple[str, str], CncNetting] = {}  # by exchange and card
        # (order id, cumulative quantity) of the CNC fills in the books: each once, however
        # often a start-up's rebuild runs (it is retried with the reconcile after a Kite error)
        self._booked: OrderedDict[tuple[str, int], None] = OrderedDict()

    def __call__(self, order: TrackedOrder, quantity: int, price: int, ts: int,
                 cumulative: int, before: int, after: int) -> Charges:
        exchange, segment = self._where(order.instrument_token, order.product)
        day = ist_date(ts)
        try:
            if segment is Segment.EQUITY_DELIVERY:
                self._book((order.order_id, cumulative))
                return self._cnc(exchange, day).fill_charges(
                    order.strategy_id, order.instrument_token, day, order.order_id,
                    cumulative, order.side, quantity, price, ts)
            return self._cards.on(day).fill_charges(segment, order.side, before, after,
                                                    exchange)
        except ValidationError as exc:
            log_.warning("zerodha.no_rate_card", instrument_token=order.instrument_token,
                         error=str(exc))
            return NO_CHARGES

    def recorded(self, fill: OrderFilled) -> None:
        exchange, segment = self._where(fill.instrument_token, fill.product)
        key = (fill.order_id, fill.cumulative_quantity)
        if segment is Segment.EQUITY_DELIVERY and key not in self._booked:
            self._book(key)
            day = ist_date(fill.ts)
            with contextlib.suppress(ValidationError):  # (charged nothing then: see above)
                self._cnc(exchange, day).fill_charges(
                    fill.strategy_id, fill.instrument_token, day, fill.order_id,
                    fill.cumulative_quantity, fill.side, fill.quantity, fill.price, fill.ts)

    def _book(self, key: tuple[str, int]) -> None:
        self._booked[key] = None
        if len(self._booked) > _BOOKED_KEPT:  # (older ones are of days whose books are closed)
            self._booked.popitem(last=False)

    def _where(self, token: int, product: Product) -> tuple[str, Segment]:
        inst = self._instruments.get(token)
        exchange = {"NFO": "NSE", "BFO": "BSE"}.get(inst.exchange, inst.exchange) if inst else "NSE"
        options = bool(inst and inst.instrument_type in ("CE", "PE"))
        if inst and inst.exchange in ("NFO", "BFO") and inst.instrument_type == "FUT":
            return exchange, Segment.FUTURES  # MIS too: intraday futures pay futures' rates
        return exchange, Segment.for_product(product, options=options)

    def _cnc(self, exchange: str, day: date) -> CncNetting:
        card = self._cards.on(day)
        netting = self._netting.get((exchange, card.version))
        if netting is None:
            netting = self._netting[(exchange, card.version)] = CncNetting(card, exchange)
        return netting
