"""The live account's cash comes from Kite (``margins("equity")`` through the official
kiteconnect client, against the fake Kite), reaches the portfolio through the log, and
survives a restart of the projector, which rebuilds it from the log without asking Kite."""

from __future__ import annotations

import asyncio
from typing import Any

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import KiteSession
from alpha_panda.domain.events import CODEC, FundsReported
from alpha_panda.portfolio import PositionLedger
from alpha_panda.services.portfolio import PortfolioHandler, build_portfolio
from alpha_panda.services.readmodel import portfolio_documents
from alpha_panda.services.zerodha_engine import build_zerodha_engine
from alpha_panda.services.zerodha_topics import CONTROL_TOPIC
from alpha_panda.stream.log import TopicPartition
from alpha_panda.stream.runtime import StreamProcessor
from alpha_panda.testing.fake_kite import FakeKite

from .helpers import FAST, append, count, signal_envelope, wait_for

KITE_CASH = 4_98_765_43  # ₹4,98,765.43 at the day's start


async def _funds_events(log: MemoryLog) -> list[FundsReported]:
    records = await log.read(TopicPartition(CONTROL_TOPIC, 0), 0, 1000)
    return [e.data for e in map(CODEC.decode, (r.value for r in records))
            if isinstance(e.data, FundsReported)]


def _projector(log: MemoryLog) -> tuple[StreamProcessor, PortfolioHandler]:
    ledger = PositionLedger(0, broker="zerodha", strategy_cash={"s1": 0}, broker_funds=True)
    return build_portfolio(log, "zerodha", ledger, FAST, snapshot_interval_s=1.0)


async def _start(p: Any) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(p.run(stop))


async def test_the_live_cash_is_kites_and_is_rebuilt_from_the_log(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    fake.opening_balance = 4_98_765.43
    projector, handler = _projector(log)
    p_stop, p_task = await _start(projector)
    await asyncio.sleep(0.2)
    doc = portfolio_documents(handler)["zerodha:portfolio"]
    assert b'"cash":null' in doc  # nothing read from Kite yet: unknown, not paper money

    trading = build_zerodha_engine(settings, log, FAST)
    t_stop, t_task = await _start(trading)

    async def cash_is(expected: int) -> bool:
        return handler.snapshot(None).cash == expected

    await wait_for(lambda: cash_is(KITE_CASH))
    assert ("GET", "/user/margins/equity") in fake.requests
    [funds] = await _funds_events(log)
    assert (funds.cash, funds.opening_balance) == (KITE_CASH, KITE_CASH)

    # a live fill of the day: ₹100 paid out of Kite's cash (which Kite moves only at settlement)
    await append(log, signal_envelope(1))
    await wait_for(lambda: count(log, "zerodha.orders.filled"))
    await wait_for(lambda: cash_is(KITE_CASH - 100_00 - handler.snapshot(None).charges))
    live_cash = handler.snapshot(None).cash
    assert handler.snapshot("s1").cash is None  # the cash is the account's, not the strategy's
    # re-read: Kite's cash is unchanged, so nothing more is written
    assert await trading.report_funds() is None
    t_stop.set()
    await asyncio.wait_for(t_task, 10)
    p_stop.set()
    await asyncio.wait_for(p_task, 10)

    # the projector restarts: its state comes from the log alone, no request to Kite
    before = len(fake.requests)
    projector, rebuilt = _projector(log)
    p_stop, p_task = await _start(projector)
    await wait_for(lambda: _now(rebuilt.snapshot(None).cash == live_cash))
    assert rebuilt.ledger.funds_reported_at is not None and len(fake.requests) == before
    p_stop.set()
    await asyncio.wait_for(p_task, 10)


async def test_a_deposit_is_written_when_the_engine_reads_the_funds_again(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    trading = build_zerodha_engine(settings, log, FAST)
    t_stop, t_task = await _start(trading)
    await wait_for(lambda: _has_funds(log, 1))
    fake.intraday_payin = 25_000.0
    assert await trading.report_funds() == FundsReported(cash=5_25_000_00,
                                                         opening_balance=5_00_000_00)
    assert [f.cash for f in await _funds_events(log)] == [5_00_000_00, 5_25_000_00]
    t_stop.set()
    await asyncio.wait_for(t_task, 10)
    restarted = build_zerodha_engine(settings, log, FAST)  # same funds: nothing more written
    t_stop, t_task = await _start(restarted)
    await wait_for(lambda: _now(restarted.funds is not None))
    await asyncio.sleep(0.3)
    t_stop.set()
    await asyncio.wait_for(t_task, 10)
    assert len(await _funds_events(log)) == 2


async def _now(value: bool) -> bool:
    return value


async def _has_funds(log: MemoryLog, n: int) -> bool:
    return len(await _funds_events(log)) >= n


async def test_a_failed_funds_read_leaves_the_engine_running_and_stopping_cleanly(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    trading = build_zerodha_engine(settings, log, FAST)
    reads: list[int] = []

    async def odd_answer(now: int | None = None) -> FundsReported | None:
        reads.append(1)
        raise KeyError("available")  # Kite answered without the field

    trading.report_funds = odd_answer  # type: ignore[method-assign]
    stop, task = await _start(trading)
    await wait_for(lambda: asyncio.sleep(0, bool(reads)))
    await asyncio.sleep(0.2)
    assert not task.done()  # trading goes on
    stop.set()
    await asyncio.wait_for(task, 10)  # and stops without raising
    assert task.exception() is None
