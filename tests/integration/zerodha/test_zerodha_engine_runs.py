"""The zerodha engine runs (and holds its lock) where it has something to do: a strategy
routes to zerodha, or it placed orders on this log, whose positions a kill switch with
flatten must still close at Kite after the strategy moved to paper."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from alpha_panda.adapters.sqlite_log.lock import lock_holders
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import KiteSession
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.control import PipelineControl
from alpha_panda.services.logs import open_log
from alpha_panda.services.preflight import run_checks
from alpha_panda.settings import ApiSettings, Settings
from alpha_panda.testing.fake_kite import FakeKite

pytestmark = pytest.mark.timeout(120)

HOLD = """\
id: hold_infy
strategy: tests.integration.pipeline.test_run_summary:BuyOnce
instruments: [408065]
brokers: {brokers}
"""


def _app(settings: ZerodhaSettings, tmp_path: Path, brokers: str, feed: str) -> Settings:
    strategies = tmp_path / "strategies"
    strategies.mkdir(exist_ok=True)
    (strategies / "hold.yaml").write_text(HOLD.format(brokers=brokers))
    return Settings(data_dir=tmp_path / "data", feed=feed, strategies_dir=strategies,
                    zerodha=settings, api=ApiSettings(enabled=False))


async def _until(check, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def _locked(app: Settings) -> set[str]:
    return {h.service for h in lock_holders(app.data_dir / "log.sqlite")}


async def test_a_paper_run_with_live_on_neither_starts_nor_locks_the_zerodha_engine(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, tmp_path: Path) -> None:
    # Live trading on, every strategy on paper, a fresh log: the run built no zerodha engine
    # but held its lock all the same, so `service zerodha-engine` beside it was refused
    # ("already running zerodha-engine") by a run that was not running one
    app = _app(settings, tmp_path, "[paper]", "sim")
    run = SystemRun(app, RunOptions(duration=30, progress=False))
    task = asyncio.create_task(run.run())
    try:
        await _until(lambda: "feed" in _locked(app), "the run must start")
        assert "zerodha-engine" not in _locked(app)
        assert run.pipeline is not None
        assert not [p for p in run.pipeline.processors if "zerodha" in p.name]
        # and the engine alone, with nothing routed to it, says so (it sat idle for good)
        alone = SystemRun(app, RunOptions(duration=1, progress=False), only="zerodha-engine")
        with pytest.raises(ConfigurationError, match="nothing for the zerodha engine to do"):
            await alone.run()
        paper = app.model_copy(update={"zerodha": settings.model_copy(
            update={"live_enabled": False})})
        with pytest.raises(ConfigurationError, match="live trading is off"):
            await SystemRun(paper, RunOptions(duration=1), only="zerodha-engine").run()
    finally:
        run.stop.set()
        await task
    assert run.failures == [] and fake.placements == 0


async def test_the_engine_runs_on_a_log_it_placed_orders_on_and_flattens_there(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, tmp_path: Path) -> None:
    fake.start_streaming(0.05)
    live = _app(settings, tmp_path, "[zerodha]", "kite")
    first = SystemRun(live, RunOptions(duration=60, progress=False))
    task = asyncio.create_task(first.run())
    try:  # the strategy buys 10 at Kite
        await _until(lambda: any(t["transaction_type"] == "BUY" for t in fake.trades),
                     "the live buy must fill", 60)
        await asyncio.sleep(1.5)  # its fill recorded and committed
    finally:
        first.stop.set()
        await task
    assert first.failures == []
    # The trader moves the strategy to paper with the 10 still held at Kite. The run built
    # no zerodha side at all, so a kill switch with flatten closed nothing there
    moved = _app(settings, tmp_path, "[paper]", "kite")
    run = SystemRun(moved, RunOptions(duration=60, progress=False))
    task = asyncio.create_task(run.run())
    try:
        await _until(lambda: run.pipeline is not None and all(
            c.ready for c in run.pipeline.health.snapshot()), "the run must be ready", 60)
        assert "zerodha-engine" in _locked(moved)
        log_ = open_log("embedded", moved.data_dir)  # as `alpha-panda kill` does
        await log_.start()
        try:
            await PipelineControl(log_, requested_by="cli").set_kill_switch(
                "zerodha", active=True, flatten=True)
        finally:
            await log_.close()
        await _until(lambda: any(t["transaction_type"] == "SELL" for t in fake.trades),
                     "the flatten must sell at Kite", 30)
    finally:
        run.stop.set()
        await task
    bought = sum(t["quantity"] for t in fake.trades if t["transaction_type"] == "BUY")
    sold = sum(t["quantity"] for t in fake.trades if t["transaction_type"] == "SELL")
    assert bought == sold == 10
    # On that log the zerodha side runs whatever the strategies say, so a simulated (or
    # replayed) feed is refused as for a strategy routed there: zerodha's risk manager
    # valued the 10 held at Kite at the random walk's prices (a daily-loss stop with
    # flatten reached on them sold at Kite for real), the live-feed guard let it by
    sim = _app(settings, tmp_path, "[paper]", "sim")
    for only in (None, "feed"):
        with pytest.raises(ConfigurationError, match="the zerodha engine runs on this log"):
            await SystemRun(sim, RunOptions(duration=5, progress=False), only=only).run()
    # and preflight says so before (it said ok, and the run it vouched for was refused)
    [live_check] = [c for c in await run_checks(sim) if c.name == "zerodha"]
    assert not live_check.ok and "the zerodha engine runs on this log" in live_check.detail
    assert fake.placements == 2
