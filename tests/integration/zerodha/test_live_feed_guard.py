"""Live trading follows the market: ``run`` and ``preflight`` refuse it on the simulator's
(or a replay's) prices, and ``preflight`` asks Kite whether it still takes the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import KiteSession
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.preflight import run_checks
from alpha_panda.settings import ApiSettings, Settings
from alpha_panda.testing.fake_kite import FakeKite

LIVE = """\
id: live_infy
strategy: sma_cross
instruments: [408065]
brokers: [paper, zerodha]
params: {fast: 2, slow: 3, quantity: 1}
"""


def _app(settings: ZerodhaSettings, tmp_path: Path, feed: str) -> Settings:
    strategies = tmp_path / "strategies"
    strategies.mkdir(exist_ok=True)
    (strategies / "live.yaml").write_text(LIVE)
    return Settings(data_dir=tmp_path / "data", feed=feed, strategies_dir=strategies,
                    zerodha=settings, api=ApiSettings(enabled=False),
                    simulator={"rate": 2000, "volatility_bps": 20})  # type: ignore[arg-type]


async def test_run_refuses_live_trading_on_the_simulators_prices(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, tmp_path: Path) -> None:
    # it used to start: the simulator's random walk (its clock at 09:15 whatever the hour)
    # sent real Kite orders, 22 fills in a 12 s run of `make run` with the switch on
    run = SystemRun(_app(settings, tmp_path, "sim"), RunOptions(duration=3, progress=False))
    with pytest.raises(ConfigurationError, match=r"live_infy route.* feed is sim.*--feed kite"):
        await run.run()
    assert fake.placements == 0


async def test_preflight_fails_live_trading_on_a_replay(
        settings: ZerodhaSettings, session: KiteSession, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks.csv"
    ticks.write_text("timestamp,instrument_token,last_price\n0,408065,100\n")
    results = await run_checks(_app(settings, tmp_path, f"replay:{ticks}"))
    [live] = [r for r in results if r.name == "zerodha"]
    assert not live.ok and "feed is replay:" in live.detail
    paper_only = _app(settings.model_copy(update={"live_enabled": False}), tmp_path, "sim")
    [live] = [r for r in await run_checks(paper_only) if r.name == "zerodha"]
    assert live.ok and live.detail.startswith("live trading off")


async def test_preflight_asks_kite_whether_it_still_takes_the_session(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, tmp_path: Path) -> None:
    app = _app(settings, tmp_path, "kite")
    [live] = [r for r in await run_checks(app) if r.name == "zerodha"]
    assert live.ok and "Kite accepts it" in live.detail
    assert ("GET", "/user/profile") in fake.requests
    # Kite dropped the token (a logout, a new login elsewhere): the file still says it is
    # valid for hours, and preflight said ok while the run's engine stopped at its start
    fake.expire_tokens()
    [live] = [r for r in await run_checks(app) if r.name == "zerodha"]
    assert not live.ok and "auth login" in live.detail and "rejected" in live.detail


async def test_a_run_whose_kite_session_is_refused_says_to_log_in_again(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, tmp_path: Path) -> None:
    # the run ended "services failed, so the run is incomplete: zerodha.trading-engine:
    # stopped on a fatal error (see processor.fatal)", and no processor.fatal line was logged
    fake.expire_tokens()
    run = SystemRun(_app(settings, tmp_path, "kite"), RunOptions(duration=3, progress=False))
    await run.run()
    [engine] = [f for f in run.failures if f.startswith("zerodha.trading-engine: ")]
    assert "Kite session rejected" in engine and "alpha-panda auth login" in engine
    assert fake.placements == 0


async def test_preflight_names_live_instruments_kite_does_not_list(
        settings: ZerodhaSettings, session: KiteSession, tmp_path: Path) -> None:
    # preflight passed, and each of the strategy's live orders was then rejected
    # UNKNOWN_INSTRUMENT ("instrument 2953217 is not in Kite's list")
    app = _app(settings, tmp_path, "kite")
    assert app.strategies_dir is not None
    (app.strategies_dir / "tcs.yaml").write_text(
        LIVE.replace("live_infy", "live_tcs").replace("[408065]", "[408065, 2953217]"))
    (app.strategies_dir / "paper.yaml").write_text(  # on paper only: not Kite's concern
        LIVE.replace("live_infy", "paper_tcs").replace("[408065]", "[2953217]")
        .replace("[paper, zerodha]", "[paper]"))
    [live] = [r for r in await run_checks(app) if r.name == "zerodha"]
    assert not live.ok
    assert live.detail.endswith("would be rejected (UNKNOWN_INSTRUMENT): live_tcs: 2953217")


async def test_a_disabled_live_strategy_does_not_block_a_paper_run_on_the_simulator(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, tmp_path: Path) -> None:
    # The live strategy switched off (enabled: false) trades nowhere: the run builds no
    # zerodha engine for it. It was refused all the same ("live_infy routes to zerodha, but
    # the feed is sim"), so a trader who parked the live strategy could not run paper on
    # the simulator without also switching live trading off.
    app = _app(settings, tmp_path, "sim")
    (app.strategies_dir / "live.yaml").write_text(LIVE + "enabled: false\n")
    (app.strategies_dir / "paper.yaml").write_text(
        LIVE.replace("live_infy", "paper_infy").replace("[paper, zerodha]", "[paper]"))
    await SystemRun(app, RunOptions(duration=1, progress=False)).run()
    assert fake.placements == 0
    # nor does preflight fail on an instrument of it Kite no longer lists
    (app.strategies_dir / "live.yaml").write_text(
        LIVE.replace("[408065]", "[2953217]") + "enabled: false\n")
    [live] = [r for r in await run_checks(app) if r.name == "zerodha"]
    assert live.ok, live.detail


async def test_a_feed_service_refuses_the_simulator_with_live_trading_on(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, tmp_path: Path) -> None:
    # `service feed --feed sim` beside `service zerodha-engine`, live on: only `run` was
    # guarded, so the feed process published the simulator's random walk and the engine
    # placed real orders on it. The feed is the process that knows its feed.
    app = _app(settings, tmp_path, "sim")
    feed = SystemRun(app, RunOptions(duration=1, progress=False), only="feed")
    with pytest.raises(ConfigurationError, match=r"live_infy route.* feed is sim.*--feed kite"):
        await feed.run()
    # Given no strategies (the samples, paper only), it cannot tell what the runner of
    # another process trades: refused too, saying how to say it
    blind = app.model_copy(update={"strategies_dir": None})
    with pytest.raises(ConfigurationError,
                       match=r"feed is sim.*cannot tell.*ALPHA_PANDA_STRATEGIES_DIR"):
        await SystemRun(blind, RunOptions(duration=1, progress=False), only="feed").run()
    assert not (app.data_dir / "log.sqlite").exists()  # refused before the log was opened
    # a process of another service does not know the feed: it starts
    await SystemRun(app, RunOptions(duration=0.5, progress=False), only="portfolio").run()
    # paper only, or on Kite's ticker, the feed service starts
    paper = app.model_copy(update={"zerodha": settings.model_copy(update={"live_enabled": False})})
    run = SystemRun(blind.model_copy(update={"zerodha": paper.zerodha}),
                    RunOptions(duration=1, progress=False), only="feed")
    await run.run()
    assert run.failures == []
    assert fake.placements == 0
