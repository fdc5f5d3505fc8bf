"""The live engine charges its fills as Zerodha's contract notes do, as paper does: a CNC buy
and sell of one stock on one day net off at intraday rates, across a restart too."""

from __future__ import annotations

from datetime import date, time

from alpha_panda.adapters.zerodha.instruments import InstrumentMaster, KiteInstrument
from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import Charges, OrderFilled
from alpha_panda.domain.values import Product, Side, Validity
from alpha_panda.execution.costs import CostModel, RateCards, Segment
from alpha_panda.execution.zerodha.reconcile import TrackedOrder
from alpha_panda.services.zerodha_charges import KiteCharges

COSTS = CostModel.load()
HDFCBANK = 341249
DAY = date(2026, 12, 3)


def order(oid: str, side: Side, product: Product = Product.CNC) -> TrackedOrder:
    return TrackedOrder(oid, f"kite-{oid}", "s", HDFCBANK, side, 4, product, Validity.DAY, "tag")


def fill(charges: KiteCharges, o: TrackedOrder, price: int, at: time, day: date = DAY) -> OrderFilled:
    """One fill of the whole order, charged as the engine's order sync charges it."""
    ts = ist_ns(day, at)
    paid = charges(o, 4, price, ts, 4, 0, 4 * price)
    return OrderFilled(order_id=o.order_id, fill_id=f"f-{o.order_id}", strategy_id="s",
                       instrument_token=HDFCBANK, side=o.side, quantity=4, price=price,
                       cumulative_quantity=4, leaves_quantity=0, average_price=price,
                       product=o.product, charges=paid, ts=ts)


def total(*charges: Charges) -> int:
    return sum(c.total for c in charges)


def test_a_same_day_cnc_round_trip_costs_what_the_same_mis_orders_cost() -> None:
    kite = KiteCharges(COSTS, InstrumentMaster())
    buy = fill(kite, order("b", Side.BUY), 1000_00, time(10, 0))
    assert buy.charges.stt == COSTS.fill_charges(Segment.EQUITY_DELIVERY, Side.BUY, 0, 4000_00).stt
    sell = fill(kite, order("s", Side.SELL), 1001_00, time(11, 0))
    mis = (COSTS.fill_charges(Segment.EQUITY_INTRADAY, Side.BUY, 0, 4000_00),
           COSTS.fill_charges(Segment.EQUITY_INTRADAY, Side.SELL, 0, 4004_00))
    assert total(buy.charges, sell.charges) == total(*mis)
    # charged per fill as delivery, it was the walkthrough's ₹8.88 against paper's ₹4.24
    delivery = COSTS.fill_charges(Segment.EQUITY_DELIVERY, Side.SELL, 0, 4004_00)
    assert total(buy.charges, sell.charges) < total(buy.charges, delivery)

    # after a restart, the engine's recorded fills are counted again: the sell pays the same
    again = KiteCharges(COSTS, InstrumentMaster())
    again.recorded(buy)
    again.recorded(buy)  # a start-up's rebuild is retried with its reconcile after a Kite error
    assert fill(again, order("s", Side.SELL), 1001_00, time(11, 0)).charges == sell.charges


def test_a_sell_on_a_later_day_is_delivery_and_mis_is_never_netted() -> None:
    kite = KiteCharges(COSTS, InstrumentMaster())
    fill(kite, order("b", Side.BUY), 1000_00, time(10, 0))
    later = fill(kite, order("s", Side.SELL), 1001_00, time(10, 0), date(2026, 12, 4))
    delivery = COSTS.fill_charges(Segment.EQUITY_DELIVERY, Side.SELL, 0, 4004_00)
    assert later.charges.total == delivery.total + COSTS.dp_charge(Segment.EQUITY_DELIVERY)
    mis = fill(kite, order("m", Side.SELL, Product.MIS), 1001_00, time(11, 0))
    assert mis.charges == COSTS.fill_charges(Segment.EQUITY_INTRADAY, Side.SELL, 0, 4004_00)


def test_an_mis_futures_fill_pays_the_futures_rates_not_equity_intradays() -> None:
    # Intraday (MIS) NIFTY futures are the common case: Zerodha charges them as futures
    # (STT 0.05% of a sell, NSE 0.00183%, stamp 0.002%). Taken by product alone they were
    # charged as equity intraday: ₹450 of STT on this ₹18 lakh sell where Zerodha takes ₹900.
    fut = KiteInstrument(instrument_token=13_238_786, exchange="NFO",
                         tradingsymbol="NIFTY26DECFUT", segment="NFO-FUT",
                         instrument_type="FUT", lot_size=75)
    kite = KiteCharges(COSTS, InstrumentMaster([fut]))
    o = TrackedOrder("f", "kite-f", "s", fut.instrument_token, Side.SELL, 75, Product.MIS,
                     Validity.DAY, "tag")
    paid = kite(o, 75, 24_000_00, ist_ns(DAY, time(10, 0)), 75, 0, 75 * 24_000_00)
    assert paid == COSTS.fill_charges(Segment.FUTURES, Side.SELL, 0, 75 * 24_000_00)
    assert (paid.stt, paid.exchange_txn, paid.brokerage) == (900_00, 32_94, 20_00)


def test_each_fill_pays_the_card_in_force_on_its_day() -> None:
    # One engine running from 31 March into 1 April 2026, when the futures STT went from
    # 0.02% to 0.05% of a sell: it kept the card it started with (₹360 on both days).
    fut = KiteInstrument(instrument_token=13_238_786, exchange="NFO",
                         tradingsymbol="NIFTY26APRFUT", segment="NFO-FUT",
                         instrument_type="FUT", lot_size=75)
    cards = RateCards.load()
    kite = KiteCharges(cards, InstrumentMaster([fut]))
    paid = []
    for n, day in enumerate((date(2026, 3, 31), date(2026, 4, 1))):
        o = TrackedOrder(f"f{n}", f"kite-f{n}", "s", fut.instrument_token, Side.SELL, 75,
                         Product.MIS, Validity.DAY, "tag")
        paid.append(kite(o, 75, 24_000_00, ist_ns(day, time(10, 0)), 75, 0, 75 * 24_000_00))
    assert [p.stt for p in paid] == [360_00, 900_00]
    assert paid[0] == cards.on(date(2026, 3, 31)).fill_charges(
        Segment.FUTURES, Side.SELL, 0, 75 * 24_000_00)
    # and a CNC day's netting book is the card of that day
    buy = fill(kite, order("b", Side.BUY), 1000_00, time(10, 0), date(2026, 3, 31))
    assert buy.charges == cards.on(date(2026, 3, 31)).fill_charges(
        Segment.EQUITY_DELIVERY, Side.BUY, 0, 4000_00)
