"""The zerodha engine's MIS cut-off: a fresh MIS order from 15:20 IST is rejected before it
reaches Kite, with the paper exchange's reason and message; exits and CNC orders go on."""

from __future__ import annotations

from datetime import date, time
from typing import Any

from alpha_panda.adapters.zerodha.instruments import InstrumentMaster, KiteInstrument
from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import (
    CODEC,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Signal,
    SignalValidated,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from alpha_panda.execution.zerodha import OrderBook, order_id_for, order_tag
from alpha_panda.services.zerodha_engine import ZerodhaEngine
from alpha_panda.services.zerodha_topics import SIGNALS_TOPIC
from alpha_panda.stream.log import Record
from alpha_panda.stream.topics import strategy_instrument_key

INFY = 408065
DAY = date(2026, 11, 23)  # a Monday


def at(hh: int, mm: int, ss: int = 0, day: date = DAY) -> int:
    return ist_ns(day, time(hh, mm, ss))


class StubKite:
    """Kite's order book and placements, in memory (the engine's two calls here)."""

    def __init__(self, book: list[dict[str, Any]] | None = None) -> None:
        self.book = book or []
        self.placed: list[dict[str, Any]] = []

    async def orders(self) -> list[dict[str, Any]]:
        return self.book

    async def place_order(self, params: dict[str, Any]) -> str:
        self.placed.append(params)
        return f"K{len(self.placed)}"


def engine(now: int, kite: StubKite, book: OrderBook | None = None) -> ZerodhaEngine:
    master = InstrumentMaster([KiteInstrument(instrument_token=INFY, exchange="NSE",
                                              tradingsymbol="INFY")])
    return ZerodhaEngine(kite, master, book or OrderBook(),  # type: ignore[arg-type]
                         clock=lambda: now)


def signal(product: Product, side: Side = Side.BUY, quantity: int = 1) -> Signal:
    return Signal(strategy_id="s1", instrument_token=INFY, side=side, quantity=quantity,
                  product=product)


async def handle(eng: ZerodhaEngine, sig: Signal, sid: str, ts: int) -> Any:
    env = new_envelope(SignalValidated(signal=sig, signal_id=sid), id=derive_id(sid, "risk"),
                       ts=ts, source="risk", broker="zerodha",
                       key=strategy_instrument_key("s1", INFY))
    record = Record(SIGNALS_TOPIC, 0, 0, env.key.encode(), CODEC.encode(env))
    [out] = await eng.ahandle(env, record)
    return out.envelope.data


def held(quantity: int, side: Side = Side.BUY, ts: int = at(10, 0)) -> OrderBook:
    """A book with a filled MIS order of the strategy's, submitted at ``ts``."""
    book = OrderBook()
    sid = f"entry-{ts}"
    book.apply(OrderSubmitted(
        order_id=order_id_for(sid), signal_id=sid, strategy_id="s1", instrument_token=INFY,
        side=side, quantity=quantity, order_type=OrderType.MARKET, product=Product.MIS,
        tag=order_tag(sid), broker_order_id=f"E{ts}", ts=ts))
    book.apply(OrderFilled(
        order_id=order_id_for(sid), fill_id=f"f{ts}", strategy_id="s1", instrument_token=INFY,
        side=side, quantity=quantity, price=100_00, cumulative_quantity=quantity,
        leaves_quantity=0, average_price=100_00, product=Product.MIS, ts=ts))
    return book


async def test_a_fresh_mis_order_after_the_cutoff_is_rejected_as_on_paper_and_not_sent() -> None:
    kite = StubKite()
    late = await handle(engine(at(15, 25), kite), signal(Product.MIS), "late", at(15, 25))
    assert isinstance(late, OrderRejected) and kite.placed == []
    paper = PaperExchange(ExecutionConfig(costs=False))
    [on_paper] = paper.submit("late", signal(Product.MIS), at(15, 25))
    assert isinstance(on_paper, OrderRejected)
    def seen(r: OrderRejected) -> tuple[Any, ...]:
        return r.reason_code, r.message, r.side, r.quantity, r.product, r.origin

    assert seen(late) == seen(on_paper) and late.reason_code == "MIS_CUTOFF"


async def test_the_cutoff_starts_at_1520_on_the_engine_s_clock() -> None:
    kite = StubKite()
    before = await handle(engine(at(15, 19, 59), kite), signal(Product.MIS), "a", at(15, 19, 59))
    assert isinstance(before, OrderSubmitted) and before.broker_order_id == "K1"
    # a signal of 15:19:59 that reaches the engine at 15:20: Kite would get it too late
    on_time = await handle(engine(at(15, 20), kite), signal(Product.MIS), "b", at(15, 19, 59))
    assert isinstance(on_time, OrderRejected) and on_time.reason_code == "MIS_CUTOFF"
    assert len(kite.placed) == 1


async def test_a_cnc_order_after_the_cutoff_is_placed() -> None:
    kite = StubKite()
    out = await handle(engine(at(15, 25), kite), signal(Product.CNC), "cnc", at(15, 25))
    assert isinstance(out, OrderSubmitted) and kite.placed[0]["product"] == "CNC"


async def test_an_exit_of_the_day_s_mis_position_goes_to_kite_after_the_cutoff() -> None:
    kite = StubKite()
    exit_ = await handle(engine(at(15, 25), kite, held(5)), signal(Product.MIS, Side.SELL, 5),
                         "exit", at(15, 25))
    assert isinstance(exit_, OrderSubmitted)
    assert [(p["product"], p["transaction_type"], p["quantity"]) for p in kite.placed] == [
        ("MIS", "SELL", 5)]
    short = StubKite()
    cover = await handle(engine(at(15, 25), short, held(4, Side.SELL)),
                         signal(Product.MIS, Side.BUY, 4), "cover", at(15, 25))
    assert isinstance(cover, OrderSubmitted) and len(short.placed) == 1


async def test_an_order_past_flat_or_against_yesterday_s_position_is_fresh() -> None:
    kite = StubKite()
    flip = await handle(engine(at(15, 25), kite, held(5)), signal(Product.MIS, Side.SELL, 6),
                        "flip", at(15, 25))
    assert isinstance(flip, OrderRejected) and flip.reason_code == "MIS_CUTOFF"
    add = await handle(engine(at(15, 25), kite, held(5)), signal(Product.MIS, Side.BUY, 1),
                       "add", at(15, 25))
    assert isinstance(add, OrderRejected) and add.reason_code == "MIS_CUTOFF"
    yesterday = held(5, ts=at(10, 0, day=date(2026, 11, 20)))
    stale = await handle(engine(at(15, 25), kite, yesterday), signal(Product.MIS, Side.SELL, 5),
                         "old", at(15, 25))
    assert isinstance(stale, OrderRejected) and stale.reason_code == "MIS_CUTOFF"
    assert kite.placed == []


async def test_an_order_placed_before_the_cutoff_is_adopted_when_redelivered_after_it() -> None:
    # placed at 15:19, the engine died before committing; the redelivery comes at 15:21
    kite = StubKite([{"order_id": "K9", "tag": order_tag("early"), "status": "COMPLETE"}])
    out = await handle(engine(at(15, 21), kite), signal(Product.MIS), "early", at(15, 19))
    assert isinstance(out, OrderSubmitted) and out.broker_order_id == "K9"
    assert kite.placed == []


async def test_without_a_cutoff_the_engine_leaves_late_mis_orders_to_kite() -> None:
    kite = StubKite()
    master = InstrumentMaster([KiteInstrument(instrument_token=INFY, exchange="NSE",
                                              tradingsymbol="INFY")])
    eng = ZerodhaEngine(kite, master, OrderBook(), clock=lambda: at(15, 25),  # type: ignore[arg-type]
                        mis_squareoff=None)
    out = await handle(eng, signal(Product.MIS), "late", at(15, 25))
    assert isinstance(out, OrderSubmitted) and len(kite.placed) == 1


NIFTY_FUT, USDINR_FUT, CRUDE_FUT = 13238786, 412675, 53505799
DERIVATIVES = InstrumentMaster([
    KiteInstrument(instrument_token=INFY, exchange="NSE", tradingsymbol="INFY"),
    KiteInstrument(instrument_token=NIFTY_FUT, exchange="NFO", tradingsymbol="NIFTY26NOVFUT",
                   segment="NFO-FUT", instrument_type="FUT"),
    KiteInstrument(instrument_token=USDINR_FUT, exchange="CDS", tradingsymbol="USDINR26DECFUT",
                   segment="CDS-FUT", instrument_type="FUT"),
    KiteInstrument(instrument_token=CRUDE_FUT, exchange="MCX", tradingsymbol="CRUDEOIL26DECFUT",
                   segment="MCX-FUT", instrument_type="FUT"),
])


async def fresh_mis(token: int, now: int) -> Any:
    kite = StubKite()
    eng = ZerodhaEngine(kite, DERIVATIVES, OrderBook(), clock=lambda: now)  # type: ignore[arg-type]
    sig = Signal(strategy_id="s1", instrument_token=token, side=Side.BUY, quantity=1,
                 product=Product.MIS)
    env = new_envelope(SignalValidated(signal=sig, signal_id=f"{token}-{now}"),
                       id=derive_id(f"{token}-{now}", "risk"), ts=now, source="risk",
                       broker="zerodha", key=strategy_instrument_key("s1", token))
    [out] = await eng.ahandle(env, Record(SIGNALS_TOPIC, 0, 0, env.key.encode(), CODEC.encode(env)))
    return out.envelope.data


async def test_the_cutoff_is_zerodha_s_of_the_instrument_s_exchange() -> None:
    # Zerodha's auto square-off (support.zerodha.com, intraday auto square-off timings):
    # equity 15:20, equity derivatives 15:25, currency 16:45, commodities 25 minutes before
    # their close; it takes fresh MIS orders until then. A NIFTY future's MIS order at 15:22
    # was refused here though Kite takes it, and a currency or MCX one all evening.
    assert isinstance(await fresh_mis(INFY, at(15, 22)), OrderRejected)
    assert isinstance(await fresh_mis(NIFTY_FUT, at(15, 22)), OrderSubmitted)
    late = await fresh_mis(NIFTY_FUT, at(15, 25))
    assert isinstance(late, OrderRejected) and late.reason_code == "MIS_CUTOFF"
    assert "15:25" in late.message
    assert isinstance(await fresh_mis(USDINR_FUT, at(16, 30)), OrderSubmitted)
    assert isinstance(await fresh_mis(USDINR_FUT, at(16, 45)), OrderRejected)
    # MCX's close moves (23:30, or 23:55 in the US winter): Kite's RMS judges those
    assert isinstance(await fresh_mis(CRUDE_FUT, at(20, 0)), OrderSubmitted)
