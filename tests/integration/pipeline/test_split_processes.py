"""The services of one embedded log split between two processes (``alpha-panda service
NAME...``), to use both cores: the same fills and P&L as one process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alpha_panda.cli.main import app
from alpha_panda.domain.events import PnlSnapshot, SignalValidated
from alpha_panda.testing.pipeline import (
    drained_beside,
    logged,
    run_replay,
    settings_for,
    write_strategy,
)
from alpha_panda.testing.redis_server import free_port
from tests.integration.pipeline.test_crash_recovery import fills_of

# (the feed's process, the orders' process): the README's split, and the other one
SPLITS = [(("feed", "strategy-runner", "risk-manager"), ("paper-engine", "portfolio")),
          (("feed", "strategy-runner", "portfolio"), ("risk-manager", "paper-engine"))]


def _starter(data: Path, strategies: Path) -> Callable[..., subprocess.Popen[str]]:
    """``start(*args)``: ``alpha-panda service *args`` on the embedded log of ``data``."""
    common = ["--data-dir", str(data), "--strategies", str(strategies), "--log", "embedded"]
    env = {**os.environ, "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
    cli = [sys.executable, "-m", "alpha_panda.cli", "service"]

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*cli, *args, *common], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    return start


async def _account(data: Path) -> tuple[int, ...]:
    """What the paper account's last P&L snapshot says the fills made of it. (Its marks,
    and so its unrealized P&L, are those of the ticks the portfolio had read when it made
    it, each second of event time and on fills: which ticks those are depends on how far
    ahead of the fills the portfolio's process had read.)"""
    last = [s for s in await logged(data, "paper.pnl.snapshots", PnlSnapshot)
            if s.strategy_id is None][-1]  # (the account's, on one partition, in order)
    assert last.cash is not None
    return (last.realized, last.charges, last.cash, last.fills, last.open_positions)


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("upstream", "downstream"), SPLITS, ids=["readme", "other"])
async def test_two_processes_of_services_trade_as_one_process_does(
        tmp_path: Path, tick_file, upstream: tuple[str, ...],
        downstream: tuple[str, ...]) -> None:
    path, cols = tick_file(12_000, 4)
    strategies = tmp_path / "strategies"
    write_strategy(strategies, tokens=sorted(set(cols.instrument_token.tolist())))
    one = settings_for(tmp_path / "one", path).model_copy(update={"strategies_dir": strategies})
    await run_replay(one)
    expected = await fills_of(one.data_dir)
    assert len(expected) > 30

    data = tmp_path / "split"
    start = _starter(data, strategies)

    async def stop(p: subprocess.Popen[str]) -> None:
        assert p.poll() is None, p.communicate()[1][-3000:]  # it still served
        p.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(p.communicate, timeout=60)
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]

    # the replay paced (12 s of ticks in 4 s), so that the orders' process stops mid-way
    procs = [start(*downstream), start(*upstream, "--feed", f"replay:{path}", "--speed", "3")]
    try:
        while len(await fills_of(data) if (data / "log.sqlite").exists() else []) < 10:
            for p in procs:
                assert p.poll() is None, p.communicate()[1][-3000:]
            await asyncio.sleep(0.1)
        await stop(procs[0])  # the orders' process stops; the feed's goes on
        await asyncio.sleep(0.5)
        procs[0] = start(*downstream)  # and starts again from its committed offsets
        await drained_beside(one.model_copy(update={"data_dir": data}), len(cols.ts),
                             timeout=180)
        for p in procs:
            await stop(p)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert await fills_of(data) == expected
    assert await _account(data) == await _account(one.data_dir)
    assert await logged(data, "paper.signals.validated", SignalValidated) == await logged(
        one.data_dir, "paper.signals.validated", SignalValidated)


def test_a_service_named_twice_or_unknown_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    twice = runner.invoke(app, ["service", "portfolio", "feed", "portfolio",
                                "--data-dir", str(tmp_path)])
    assert twice.exit_code == 2, twice.output
    assert "a service named twice: portfolio feed portfolio" in twice.stderr
    unknown = runner.invoke(app, ["service", "feed", "porfolio", "--data-dir", str(tmp_path)])
    assert unknown.exit_code == 2, unknown.output
    assert "unknown service 'porfolio'" in unknown.stderr
    assert not (tmp_path / "log.sqlite").exists()  # refused before it opened the log


def _get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:  # not listening yet
        return 0, None


def _post(port: int, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST",
                                 data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.timeout(180)
async def test_an_api_beside_the_portfolio_serves_the_strategies_of_the_other_process(
        tmp_path: Path, tick_file) -> None:
    """The API in the orders' process (paper engine, portfolio) serves the strategies the
    runner in the feed's process writes (their files, signals, status) and the kill switch
    of the risk manager there, through the data directory's shared read-model file, and
    halts a strategy of the other process. (Each process's cache was its own: the
    strategies table was empty, and a halt answered 404.)"""
    path, cols = tick_file(20_000, 4)
    strategies = tmp_path / "strategies"
    write_strategy(strategies, id="sma", tokens=sorted(set(cols.instrument_token.tolist())))
    port = free_port()
    start = _starter(tmp_path / "data", strategies)
    procs = [start("paper-engine", "portfolio", "api", "--port", str(port)),
             start("feed", "strategy-runner", "risk-manager", "--feed", f"replay:{path}",
                   "--speed", "1")]

    async def until(check: Callable[[], bool], what: str) -> None:
        for _ in range(600):
            if await asyncio.to_thread(check):
                return
            for p in procs:
                assert p.poll() is None, p.communicate()[1][-3000:]
            await asyncio.sleep(0.1)
        raise AssertionError(f"not within 60 s: {what}")

    def strategy() -> dict[str, Any]:
        status, body = _get(port, "/api/v1/strategies")
        return next((s for s in body if s["id"] == "sma"), {}) if status == 200 else {}

    try:
        await until(lambda: strategy().get("signals", 0) > 0 and
                    _get(port, "/api/v1/portfolios/paper")[1]["fills"] > 0,
                    "the runner's signals and the portfolio's fills, in one API")
        assert strategy()["status"] == "ACTIVE" and strategy()["brokers"] == ["paper"]
        status, switches = _get(port, "/api/v1/kill-switch")
        assert status == 200 and ("paper", False) in [(s["broker"], s["active"])
                                                      for s in switches]
        status, halted = _post(port, "/api/v1/strategies/sma/halt", {})
        assert status == 200 and halted["brokers"] == ["paper"], halted
        await until(lambda: strategy().get("status") == "HALTED",
                    "the halt, applied by the runner of the other process")
        assert _post(port, "/api/v1/strategies/nope/halt", {})[0] == 404
        for p in procs:
            assert p.poll() is None, p.communicate()[1][-3000:]
            p.send_signal(signal.SIGTERM)
        for p in procs:
            _, err = await asyncio.to_thread(p.communicate, timeout=60)
            assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
