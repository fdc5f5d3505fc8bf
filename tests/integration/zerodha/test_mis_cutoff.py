"""The MIS cut-off live, against the fake Kite through the official kiteconnect client: Kite's
RMS rejects a fresh MIS order from 15:20 IST and takes exits; the zerodha engine rejects the
fresh one itself, ``MIS_CUTOFF`` as on paper, and places CNC orders and exits."""

from __future__ import annotations

import asyncio
from datetime import date, time

from kiteconnect import KiteConnect

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import KiteSession
from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import OrderRejected
from alpha_panda.domain.values import Product, Side
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from alpha_panda.services.zerodha_engine import build_zerodha_engine
from alpha_panda.testing.fake_kite import FakeKite

from .helpers import FAST, append, count, order_events, signal_envelope, wait_for

DAY = date(2026, 11, 23)  # a Monday


def at(hh: int, mm: int, ss: int = 0) -> int:
    return ist_ns(DAY, time(hh, mm, ss))


def place(kite: KiteConnect, side: str, quantity: int, product: str) -> dict[str, object]:
    """Place a market order for INFY; Kite's latest view of it."""
    oid = kite.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY",
                           transaction_type=side, quantity=quantity, product=product,
                           order_type="MARKET", market_protection=-1)
    last: dict[str, object] = kite.order_history(oid)[-1]
    return last


def test_kite_takes_no_fresh_mis_order_from_its_cutoff_but_takes_exits(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    kite = KiteConnect(settings.api_key, access_token=session.access_token, root=fake.root_url)
    now = [at(15, 10)]
    fake.clock = lambda: now[0]
    assert place(kite, "BUY", 5, "MIS")["status"] == "COMPLETE"
    now[0] = at(15, 20)
    fresh = place(kite, "BUY", 1, "MIS")  # placed (an order id), then rejected by the RMS
    assert fresh["status"] == "REJECTED" and fresh["filled_quantity"] == 0
    message = str(fresh["status_message"])
    assert message.startswith("RMS:") and "15:20" in message
    assert place(kite, "BUY", 1, "CNC")["status"] == "COMPLETE"
    assert place(kite, "SELL", 6, "MIS")["status"] == "REJECTED"  # past flat: a fresh short
    assert place(kite, "SELL", 5, "MIS")["status"] == "COMPLETE"  # the exit
    assert place(kite, "SELL", 1, "MIS")["status"] == "REJECTED"  # flat now
    now[0] = at(15, 19, 59)
    assert place(kite, "BUY", 1, "MIS")["status"] == "COMPLETE"
    fake.mis_cutoffs["NSE"] = time(15, 0)
    assert place(kite, "BUY", 1, "MIS")["status"] == "REJECTED"
    assert fake.placements == 8  # every one placed: the RMS rejects after placement


async def test_the_engine_rejects_a_late_mis_order_as_paper_does_and_places_the_rest(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    now = [at(15, 10)]
    fake.clock = lambda: now[0]
    trading = build_zerodha_engine(settings, log, FAST, clock=lambda: now[0])
    stop = asyncio.Event()
    task = asyncio.create_task(trading.run(stop))
    try:
        await append(log, signal_envelope(1, quantity=5, product=Product.MIS, ts=now[0]))
        await wait_for(lambda: _events(log, "filled", 1))
        now[0] = at(15, 25)
        await append(log,
                     signal_envelope(2, product=Product.MIS, ts=now[0]),
                     signal_envelope(3, product=Product.CNC, ts=now[0]),
                     signal_envelope(4, quantity=5, side=Side.SELL, product=Product.MIS,
                                     ts=now[0]))
        await wait_for(lambda: _events(log, "filled", 3))
        await wait_for(lambda: _events(log, "rejected", 1))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    [rejected] = [e.data for e in await order_events(log, "rejected")]
    assert isinstance(rejected, OrderRejected) and rejected.reason_code == "MIS_CUTOFF"
    paper = PaperExchange(ExecutionConfig(costs=False))
    [on_paper] = paper.submit("signal-2", signal_envelope(2, product=Product.MIS).envelope
                              .data.signal, at(15, 25))
    assert isinstance(on_paper, OrderRejected)
    assert (rejected.reason_code, rejected.message) == (on_paper.reason_code, on_paper.message)
    submitted = {e.data.signal_id: e.data for e in await order_events(log, "submitted")}
    assert sorted(submitted) == ["signal-1", "signal-3", "signal-4"]  # never signal 2
    assert fake.placements == 3
    placed = sorted((o["product"], o["transaction_type"], o["quantity"], o["status"])
                    for o in fake.orders.values())
    assert placed == [("CNC", "BUY", 1, "COMPLETE"), ("MIS", "BUY", 5, "COMPLETE"),
                      ("MIS", "SELL", 5, "COMPLETE")]


async def _events(log: MemoryLog, suffix: str, n: int) -> bool:
    return await count(log, f"zerodha.orders.{suffix}") >= n
