"""The paper exchange's CNC charges: same-day CNC round trips at intraday rates, the DP
charge on sells from holdings, and the netting state across a rebuild.

Figures by hand from the 2026-04-01 card: intraday brokerage 0.03% capped at ₹20 per order,
STT 0.025% on the sell; delivery STT 0.1% both sides; stamp 0.003% (intraday) / 0.015%
(delivery) on buys; NSE transaction 0.00307%; SEBI ₹10/crore; GST 18% of brokerage +
transaction + SEBI; DP ₹13 + 18% = ₹15.34. Every item rounded half up to the paisa.
"""

from __future__ import annotations

import random
from datetime import date, time
from decimal import Decimal
from typing import Any

from alpha_panda.domain.events import (
    CODEC,
    NO_CHARGES,
    Charges,
    MarketTick,
    OrderFilled,
    Payload,
    Signal,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.costs import CostModel, Segment
from alpha_panda.execution.market import ist_ns
from alpha_panda.execution.netting import DAYS_KEPT, CncNetting
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from tests.unit.execution.cnc_books import add, cnc_books, expected_cnc_books

TOKEN, OTHER = 738561, 341249
DAY1, DAY2 = date(2026, 11, 23), date(2026, 11, 25)  # Monday, Wednesday (24th: a holiday)
DAY0 = date(2026, 11, 20)  # the Friday before
COSTS = CostModel.load(as_of=DAY1)
DP = 15_34


def at(day: date, hh: int, mm: int = 0) -> int:
    return ist_ns(day, time(hh, mm))


def sig(side: Side, qty: int, price: int, *, product: Product = Product.CNC,
        strategy: str = "s1", token: int = TOKEN, **kw: Any) -> Signal:
    return Signal(strategy_id=strategy, instrument_token=token, side=side, quantity=qty,
                  price_hint=price, product=product, **kw)


def ex(**kw: Any) -> PaperExchange:
    return PaperExchange(ExecutionConfig(costs=True, cost_model=COSTS, **kw), seed=7)


def charges(events: list[Payload]) -> list[Charges]:
    return [e.charges for e in events if isinstance(e, OrderFilled)]


def total(items: list[Charges]) -> Charges:
    out = NO_CHARGES
    for c in items:
        out = add(out, c)
    return out


def holding(x: PaperExchange, qty: int, strategy: str = "s1") -> PaperExchange:
    """``x`` with ``qty`` bought in CNC by ``strategy`` on DAY0: held on the days after
    (the exchange sells in CNC only what a strategy holds)."""
    trade(x, (f"held-{strategy}", sig(Side.BUY, qty, 1000_00, strategy=strategy), at(DAY0, 10)))
    return x


def trade(x: PaperExchange, *orders: tuple[str, Signal, int]) -> list[Charges]:
    out: list[Payload] = []
    for sid, s, ts in orders:
        out += x.submit(sid, s, ts)
    return charges(out)


# ---------------------------------------------------------------- same-day netting


def test_a_same_day_cnc_round_trip_costs_exactly_an_mis_round_trip() -> None:
    # buy 25 @ ₹500 and sell 25 @ ₹500: ₹25,000 of turnover
    def round_trip(product: Product) -> list[Charges]:
        return trade(ex(), ("b", sig(Side.BUY, 25, 500_00, product=product), at(DAY1, 10)),
                     ("s", sig(Side.SELL, 25, 500_00, product=product), at(DAY1, 11)))

    cnc, mis = round_trip(Product.CNC), round_trip(Product.MIS)
    # MIS buy: brokerage 3.75, txn 0.38, SEBI 0.01, stamp 0.375 -> 0.38, GST of 4.14 = 0.75
    # MIS sell: brokerage 3.75, STT 3.125 -> 3.13, txn 0.38, SEBI 0.01, GST 0.75
    assert mis == [Charges(brokerage=375, exchange_txn=38, sebi=1, stamp_duty=38, gst=75),
                   Charges(brokerage=375, stt=313, exchange_txn=38, sebi=1, gst=75)]
    assert total(cnc) == total(mis) == Charges(
        brokerage=750, stt=313, exchange_txn=76, sebi=2, stamp_duty=38, gst=150)
    assert total(cnc).total == 13_29  # as two delivery trades it was 27.80 (14.84 + 12.96)
    # The buy is charged delivery rates when it fills (it might be held overnight); the sell
    # that nets it off pays its own intraday charges, the buy's intraday brokerage, and
    # gives back the buy's delivery STT and stamp duty above the intraday ones.
    assert cnc[0] == Charges(stt=1250, exchange_txn=38, sebi=1, stamp_duty=188, gst=7)
    assert cnc[1] == Charges(brokerage=750, stt=313 - 1250, exchange_txn=38, sebi=1,
                             stamp_duty=38 - 188, gst=150 - 7)


def test_only_the_netted_quantity_is_intraday() -> None:
    x = ex()
    day1 = trade(x, ("b", sig(Side.BUY, 10, 1000_00), at(DAY1, 10)),
                 ("s", sig(Side.SELL, 4, 1010_00), at(DAY1, 11)))
    # buy order: 4 intraday (₹4,000): stamp 0.12; 6 delivery (₹6,000): STT 6.00, stamp 0.90;
    #            netted in part, it pays intraday brokerage on all of its ₹10,000: 3.00,
    #            txn 0.307 -> 0.31, SEBI 0.01, GST of 3.32 = 0.5976 -> 0.60
    # sell order: 4 intraday (₹4,040): brokerage 1.21, STT 1.01, txn 0.12, GST of 1.33 = 0.24
    buy_order = Charges(brokerage=300, stt=600, exchange_txn=31, sebi=1,
                        stamp_duty=12 + 90, gst=60)
    sell_order = Charges(brokerage=121, stt=101, exchange_txn=12, gst=24)
    assert total(day1) == add(buy_order, sell_order)
    assert total(day1).total == 13_52  # two delivery trades: 11.88 + 4.18 = 16.06
    assert day1[0] == COSTS.order_charges(Segment.EQUITY_DELIVERY, Side.BUY, 10 * 1000_00)
    assert day1[1].dp == 0  # nothing left the demat account
    # the other 6 are held: sold the next day at delivery rates, plus the DP charge
    day2 = trade(x, ("s2", sig(Side.SELL, 6, 1020_00), at(DAY2, 10)))
    assert day2 == [Charges(stt=612, exchange_txn=19, sebi=1, gst=4, dp=DP)]


def test_selling_from_holdings_and_buying_back_the_same_day_is_intraday_and_pays_no_dp() -> None:
    x = ex()
    trade(x, ("b", sig(Side.BUY, 10, 1000_00), at(DAY1, 10)))
    sell, buy = trade(x, ("s", sig(Side.SELL, 10, 1000_00), at(DAY2, 10)),
                      ("b2", sig(Side.BUY, 10, 1000_00), at(DAY2, 11)))
    assert sell.dp == DP and buy.dp == -DP  # sold from holdings, then not after all
    # the two MIS orders' charges (the calculator's round trip would round the STT of ₹2.50
    # to ₹3: a fill's STT is its order's, to the paisa)
    mis = [COSTS.order_charges(Segment.EQUITY_INTRADAY, side, 10 * 1000_00)
           for side in (Side.SELL, Side.BUY)]
    assert add(sell, buy) == add(*mis)


def test_an_order_that_nets_off_in_part_pays_intraday_brokerage_on_the_whole_order() -> None:
    # Zerodha's support ("Why was the brokerage charged on delivery trades?"): 50 held
    # shares sold and 25 bought back the same day in CNC: "Intraday charges will be
    # applicable for both orders, regardless of the quantity bought back".
    x = holding(ex(), 100)
    sell, buy = trade(x, ("s", sig(Side.SELL, 50, 1500_00), at(DAY1, 11)),
                      ("b", sig(Side.BUY, 25, 1480_00), at(DAY1, 13)))
    # sell ₹75,000: brokerage min(20, 22.50) = 20.00 on the whole order (on the 25 netted,
    # ₹37,500, it was 11.25); STT 0.025% of 37,500 = 9.375 -> 9.38 + 0.1% of the 25 sold
    # from holdings 37.50; txn 2.3025 -> 2.30; SEBI 0.075 -> 0.08; GST of 22.38 = 4.03
    sell_order = Charges(brokerage=20_00, stt=938 + 37_50, exchange_txn=230, sebi=8, gst=403)
    # buy ₹37,000, all intraday: brokerage 11.10; txn 1.1359 -> 1.14; SEBI 0.04; stamp
    # 1.11; GST of 12.28 = 2.21
    buy_order = Charges(brokerage=11_10, exchange_txn=114, sebi=4, stamp_duty=111, gst=221)
    assert add(sell, buy) == add(add(sell_order, buy_order), Charges(dp=DP))
    assert add(sell, buy).brokerage == 31_10  # was 22.35
    # and a CNC buy that nets 4 of its 10 pays brokerage on all 10 (₹3.00, not ₹1.20)
    day = trade(ex(), ("a", sig(Side.BUY, 10, 1000_00), at(DAY1, 10)),
                ("c", sig(Side.SELL, 4, 1010_00), at(DAY1, 11)))
    assert total(day).brokerage == 3_00 + 1_21


def test_what_does_not_net_another_strategy_another_day_an_mis_fill() -> None:
    x = holding(ex(), 10, strategy="s2")
    got = trade(x, ("a", sig(Side.BUY, 10, 1000_00, strategy="s1"), at(DAY1, 10)),
                ("b", sig(Side.SELL, 10, 1000_00, strategy="s2"), at(DAY1, 11)),
                ("c", sig(Side.SELL, 10, 1000_00, product=Product.MIS), at(DAY1, 12)),
                ("d", sig(Side.SELL, 10, 1000_00, strategy="s1"), at(DAY2, 10)))
    delivery = COSTS.round_trip(Segment.EQUITY_DELIVERY, 1000_00, 1000_00, 10)
    # s2 sells what it held, not s1's buy (Zerodha would net the two in one account): DP;
    # the MIS sell is intraday on its own; s1 sells its buy the next day: delivery and DP
    assert got == [delivery.buy, delivery.sell,
                   COSTS.order_charges(Segment.EQUITY_INTRADAY, Side.SELL, 10 * 1000_00),
                   delivery.sell]
    assert [c.dp for c in got] == [0, DP, 0, DP]


def test_an_unnetted_cnc_orders_part_fills_add_up_to_the_order_as_before() -> None:
    x = ex(volume_participation=Decimal("0.5"))
    out = x.submit("a", sig(Side.BUY, 30, 1000_00), at(DAY1, 10))
    for k, qty in enumerate((10, 20, 40)):  # 5, 10, then the 15 left
        out += x.on_tick(MarketTick(instrument_token=TOKEN, last_price=1000_00 + 5 * k,
                                    last_quantity=qty, ts=at(DAY1, 10, k + 1)))
    parts = charges(out)
    assert len(parts) == 3
    turnover = 5 * 1000_00 + 10 * 1000_05 + 15 * 1000_10
    assert total(parts) == COSTS.order_charges(Segment.EQUITY_DELIVERY, Side.BUY, turnover)


# ---------------------------------------------------------------- DP charge


def test_the_dp_charge_is_once_per_scrip_per_day_whatever_the_sells() -> None:
    x = ex()
    trade(x, ("a", sig(Side.BUY, 10, 1000_00), at(DAY1, 10)),
          ("b", sig(Side.BUY, 10, 500_00, token=OTHER), at(DAY1, 10)))
    day2 = trade(x, ("c", sig(Side.SELL, 4, 1000_00), at(DAY2, 10)),
                 ("d", sig(Side.SELL, 6, 1000_00), at(DAY2, 11)),
                 ("e", sig(Side.SELL, 10, 500_00, token=OTHER), at(DAY2, 12)))
    assert [c.dp for c in day2] == [DP, 0, DP]
    assert sum(c.dp for c in day2) == 2 * DP == 30_68
    off = PaperExchange(ExecutionConfig(costs=False))  # no costs: no DP either
    off.submit("a", sig(Side.BUY, 10, 1000_00), at(DAY1, 10))
    assert charges(off.submit("c", sig(Side.SELL, 4, 1000_00), at(DAY2, 10))) == [NO_CHARGES]
    # and delivery rates otherwise: each sell as a delivery order of its own
    for c, (qty, price) in zip(day2, ((4, 1000_00), (6, 1000_00), (10, 500_00)), strict=True):
        order = COSTS.order_charges(Segment.EQUITY_DELIVERY, Side.SELL, qty * price)
        assert add(order, Charges(dp=c.dp)) == c


def test_an_older_fill_event_without_dp_decodes_with_none() -> None:
    fill = OrderFilled(order_id="o", fill_id="f", strategy_id="s1", instrument_token=TOKEN,
                       side=Side.SELL, quantity=1, price=100_00, cumulative_quantity=1,
                       leaves_quantity=0, average_price=100_00, charges=Charges(stt=10), ts=1)
    raw = CODEC.encode(new_envelope(fill, id="e1", source="test", key="k", ts=1))
    assert b',"dp":0' in raw
    old = CODEC.decode(raw.replace(b',"dp":0', b""))
    assert old.data == fill and old.data.charges.dp == 0


# ---------------------------------------------------------------- order and rebuild


def _ticks(day: date) -> list[MarketTick]:
    return [MarketTick(instrument_token=TOKEN, last_price=p, ts=at(day, 10, k), last_quantity=50)
            for k, p in enumerate((1000_00, 1001_00, 999_00, 998_00, 1002_00, 1003_00))]


SIGNALS = [  # a resting limit buy filled on the 10:03 tick, market sells at 10:04 and 10:05
    ("a", sig(Side.BUY, 10, 1000_00, order_type=OrderType.LIMIT, limit_price=998_00),
     at(DAY1, 10, 0)),
    ("b", sig(Side.SELL, 4, 1002_00), at(DAY1, 10, 4)),
    ("c", sig(Side.SELL, 3, 1003_00), at(DAY1, 10, 5)),
]


def _live(x: PaperExchange) -> list[Payload]:
    out: list[Payload] = []
    for t in _ticks(DAY1):
        out += x.on_tick(t)
        out += [e for sid, s, ts in SIGNALS if ts == t.ts for e in x.submit(sid, s, ts)]
    return out


def test_a_rebuild_restores_the_days_books_and_charges_on_as_the_live_run() -> None:
    # The paper engine rebuilds by replaying every tick, then the signals: the books it
    # ends with are the live run's, so the next fills are charged alike, to the paisa.
    live, rebuilt = ex(), ex()
    live_out = _live(live)
    rebuilt_out = [e for t in _ticks(DAY1) for e in rebuilt.on_tick(t)]
    rebuilt_out += [e for sid, s, ts in SIGNALS for e in rebuilt.submit(sid, s, ts)]
    assert len(charges(live_out)) == 3
    assert charges(rebuilt_out) == charges(live_out)  # here processed in the same order
    later = [("d", sig(Side.SELL, 3, 1004_00), at(DAY1, 11)),
             ("e", sig(Side.BUY, 5, 1004_00), at(DAY1, 12)),
             ("f", sig(Side.SELL, 5, 1010_00), at(DAY2, 10))]
    live_later = [e for sid, s, ts in later for e in live.submit(sid, s, ts)]
    assert charges(live_later) == trade(rebuilt, *later)
    # day 1: bought 15, sold 10 (10 intraday, 5 held); day 2: 5 sold from holdings
    books = cnc_books(live_out + live_later)
    assert books == expected_cnc_books(live_out + live_later, COSTS)
    assert books[("s1", TOKEN, DAY1)].dp == 0 and books[("s1", TOKEN, DAY2)].dp == DP
    assert _live(ex()) == live_out  # the same inputs in the same order: the same events


def test_a_days_charges_do_not_depend_on_the_order_its_fills_are_processed_in() -> None:
    # Lagging: the limit buy's 10:03 fill is processed after the 10:04 and 10:05 sells
    # (sold from the holdings of the day before for now: DP), yet the day costs what it
    # costs processed in time.
    x = holding(ex(), 7)
    for t in _ticks(DAY1):
        x.on_tick(t)
    late = trade(x, *[SIGNALS[1], SIGNALS[2], SIGNALS[0]])
    in_time = charges(_live(holding(ex(), 7)))
    assert late[0].dp == DP and late[2].dp == -DP
    assert total(late) == total(in_time) == expected_cnc_books(_live(ex()), COSTS)[
        ("s1", TOKEN, DAY1)]
    assert late != in_time  # each fill's share follows the processing order


def test_the_books_match_an_independent_computation() -> None:
    out = _live(ex())
    assert cnc_books(out) == expected_cnc_books(out, COSTS)
    assert len(cnc_books(out)) == 1


def test_books_older_than_a_week_before_a_new_one_are_dropped() -> None:
    netting = CncNetting(COSTS)
    netting.fill_charges("s1", TOKEN, DAY1, "o1", 0, Side.BUY, 1, 100_00, at(DAY1, 10))
    days = netting._books[("s1", TOKEN)]
    later = date.fromordinal(DAY1.toordinal() + DAYS_KEPT)
    netting.fill_charges("s1", TOKEN, later, "o2", 0, Side.BUY, 1, 100_00, at(later, 10))
    assert list(days) == [DAY1, later]
    last = date.fromordinal(later.toordinal() + 1)
    netting.fill_charges("s1", TOKEN, last, "o3", 0, Side.BUY, 1, 100_00, at(last, 10))
    assert list(days) == [later, last]


def test_any_processing_order_gives_the_day_the_same_charges() -> None:
    # Fills of a day (both sides, orders filled in parts) fed to the book in random orders:
    # the shares differ, the day's total is always the one computed from the set.
    rng = random.Random(11)
    events: list[OrderFilled] = []
    for k in range(8):
        side = Side.BUY if k % 3 else Side.SELL
        cumulative = 0
        for n in range(rng.randint(1, 3)):
            qty = rng.randint(1, 20)
            cumulative += qty
            events.append(OrderFilled(
                order_id=f"o{k}", fill_id=f"o{k}-{n}", strategy_id="s1", instrument_token=TOKEN,
                side=side, quantity=qty, price=rng.choice((999_00, 1000_00, 1001_50)),
                cumulative_quantity=cumulative, leaves_quantity=0, average_price=0,
                ts=at(DAY1, 10) + rng.randint(0, 3600) * 10**9, product=Product.CNC))
    expected = expected_cnc_books(events, COSTS)[("s1", TOKEN, DAY1)]
    for _ in range(30):
        rng.shuffle(events)
        netting = CncNetting(COSTS)
        got = [netting.fill_charges("s1", TOKEN, DAY1, e.order_id, int(e.fill_id.split("-")[1]),
                                    e.side, e.quantity, e.price, e.ts) for e in events]
        assert total(got) == expected
