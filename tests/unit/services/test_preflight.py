"""``alpha-panda preflight`` checks the log where the system keeps it, and leaves nothing."""

from __future__ import annotations

from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path

import pytest

from alpha_panda.domain.clock import IST
from alpha_panda.services.preflight import run_checks
from alpha_panda.settings import Settings


async def _log_check(data_dir: Path) -> tuple[bool, str]:
    settings = Settings().model_copy(update={"data_dir": data_dir})
    [log] = [r for r in await run_checks(settings) if r.name == "log"]
    return log.ok, log.detail


async def test_no_log_yet_is_said_and_none_is_created(tmp_path: Path) -> None:
    # run from the wrong directory, it made an empty log there and called it reachable
    ok, detail = await _log_check(tmp_path / "data")
    assert ok and "no log at" in detail and str(tmp_path / "data" / "log.sqlite") in detail
    assert not (tmp_path / "data").exists()


async def test_an_existing_log_is_opened_and_its_topics_counted(tmp_path: Path) -> None:
    from alpha_panda.services.logs import open_log
    from alpha_panda.stream.topics import REGISTRY

    log = open_log("embedded", tmp_path)
    await log.start()
    await log.ensure_topics(REGISTRY.all())
    await log.close()
    ok, detail = await _log_check(tmp_path)
    assert ok and detail == f"embedded: reachable, {len(REGISTRY.all())} topics"


async def test_a_log_that_cannot_be_created_there_fails(tmp_path: Path) -> None:
    ok, detail = await _log_check(Path("/proc/no/such/data"))
    assert not ok and "cannot be created there" in detail


async def test_risk_limits_run_would_refuse_fail_the_check_naming_the_limit(tmp_path: Path) -> None:
    settings = Settings().model_copy(update={"data_dir": tmp_path})
    [risk] = [r for r in await run_checks(settings) if r.name == "risk"]
    assert risk.ok and risk.detail.startswith("limits valid for paper")
    typo = settings.model_copy(update={"risk": {"global": {"daily_los": 3000}}})
    [risk] = [r for r in await run_checks(typo) if r.name == "risk"]
    assert not risk.ok and "daily_los" in risk.detail


async def test_strategies_listing_zerodha_while_live_is_off_are_named(tmp_path: Path) -> None:
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "both.yaml").write_text(
        "id: both\nstrategy: sma_cross\ninstruments: [341249]\nbrokers: [paper, zerodha]\n")
    settings = Settings().model_copy(update={"data_dir": tmp_path, "strategies_dir": strategies})
    [live] = [r for r in await run_checks(settings) if r.name == "zerodha"]
    assert live.ok and live.detail.startswith("live trading off: both list zerodha")


async def test_the_strategies_are_loaded_once_for_all_the_checks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # with a config store each load writes its rows: three checks wrote them three times
    from alpha_panda.services import strategy_configs

    calls = []
    real = strategy_configs.load_strategies
    monkeypatch.setattr(strategy_configs, "load_strategies",
                        lambda s: calls.append(s) or real(s))
    results = await run_checks(Settings().model_copy(update={"data_dir": tmp_path}))
    assert {r.name for r in results} >= {"strategies", "risk", "zerodha"} and len(calls) == 1


async def test_the_calendar_check_says_which_years_it_lists_and_warns_of_this_one_past_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from alpha_panda.domain.clock import ist_ns

    settings = Settings().model_copy(update={"data_dir": tmp_path})
    monkeypatch.setattr(time, "time_ns", lambda: ist_ns(date(2026, 12, 7), dtime(11, 0)))
    [cal] = [r for r in await run_checks(settings) if r.name == "calendar"]
    assert cal.ok and cal.detail == "NSE holidays listed for 2024-2026"
    monkeypatch.setattr(time, "time_ns", lambda: ist_ns(date(2027, 1, 4), dtime(11, 0)))
    [cal] = [r for r in await run_checks(settings) if r.name == "calendar"]
    assert cal.ok and cal.detail.startswith("NSE's holidays of 2027 are not in")


@pytest.mark.parametrize(("feed", "detail"), [
    ("sinm", "unknown feed 'sinm': expected sim, replay:PATH or kite"),
    ("replay:", "replay: names no tick file (--feed replay:ticks.csv)"),
    ("replay:TMP", "replay file TMP is a directory, not a tick file"),
    ("replay:TMP/ticks.csvv", "replay file TMP/ticks.csvv does not exist"),
])
async def test_a_feed_run_would_refuse_fails_the_check(
        tmp_path: Path, feed: str, detail: str) -> None:
    # `preflight --feed sinm` passed the feed ("ok  sinm") and exited 0; `run` refused it
    settings = Settings().model_copy(update={"data_dir": tmp_path / "data",
                                             "feed": feed.replace("TMP", str(tmp_path))})
    [check] = [r for r in await run_checks(settings) if r.name == "feed"]
    assert (check.ok, check.detail) == (False, detail.replace("TMP", str(tmp_path)))


async def test_a_replay_file_run_would_refuse_fails_the_check(tmp_path: Path) -> None:
    # only the file's existence was checked: a row that does not read passed, and `run`
    # then refused the file
    ticks = tmp_path / "ticks.csv"
    ticks.write_text("timestamp,instrument_token,last_price\n"
                     "1775447100000000000,738561,1289\n1775447101000000000,738561,abc\n")
    settings = Settings().model_copy(update={"data_dir": tmp_path / "data",
                                             "feed": f"replay:{ticks}"})
    [check] = [r for r in await run_checks(settings) if r.name == "feed"]
    assert (check.ok, check.detail) == (
        False, f"{ticks}, row 2 (line 3), column 'last_price': not a number: 'abc'")
    ticks.write_text("timestamp,instrument_token,last_price\n"
                     "1775447100000000000,738561,1289\n1775447101000000000,738561,1290\n")
    [check] = [r for r in await run_checks(settings) if r.name == "feed"]
    assert (check.ok, check.detail) == (True, f"replay file {ticks}: 2 ticks (102 bytes)")


async def test_the_kite_feed_needs_a_stored_session_with_live_trading_off_too(
        tmp_path: Path) -> None:
    # `preflight --feed kite` passed without any session ("feed  ok  kite"); `run --feed
    # kite` then refused to start, the ticker having no access token
    from pydantic import SecretStr

    from alpha_panda.adapters.zerodha.config import zerodha_settings
    from alpha_panda.adapters.zerodha.session import KiteSession, SessionStore

    settings = Settings(zerodha={"session_key": SecretStr("pass"),  # type: ignore[arg-type]
                                 "api_key": "k"}).model_copy(
        update={"data_dir": tmp_path, "feed": "kite"})
    [check] = [r for r in await run_checks(settings) if r.name == "feed"]
    assert not check.ok and check.detail.startswith("no Zerodha session: ")
    expires = int(datetime(2099, 1, 2, 6, 0, tzinfo=IST).timestamp()) * 1_000_000_000
    SessionStore.from_settings(zerodha_settings(settings)).save(KiteSession(
        user_id="AB1234", user_name="T", api_key="k", access_token="secret", login_ns=1,
        expires_ns=expires))
    [check] = [r for r in await run_checks(settings) if r.name == "feed"]
    assert (check.ok, check.detail) == (
        True, "kite: the session of AB1234, valid until 2099-01-02 06:00 IST")
