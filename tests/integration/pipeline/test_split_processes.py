"""The services of one embedded log split between two processes (``alpha-panda service
NAME...``), to use both cores: the same fills and P&L as one process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

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
from tests.integration.pipeline.test_crash_recovery import fills_of

UPSTREAM = ("feed", "strategy-runner", "portfolio")
DOWNSTREAM = ("risk-manager", "paper-engine")


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
async def test_two_processes_of_services_trade_as_one_process_does(
        tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(12_000, 4)
    strategies = tmp_path / "strategies"
    write_strategy(strategies, tokens=sorted(set(cols.instrument_token.tolist())))
    one = settings_for(tmp_path / "one", path).model_copy(update={"strategies_dir": strategies})
    await run_replay(one)
    expected = await fills_of(one.data_dir)
    assert len(expected) > 30

    data = tmp_path / "split"
    common = ["--data-dir", str(data), "--strategies", str(strategies), "--log", "embedded"]
    env = {**os.environ, "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
    cli = [sys.executable, "-m", "alpha_panda.cli", "service"]

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*cli, *args, *common], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    async def stop(p: subprocess.Popen[str]) -> None:
        assert p.poll() is None, p.communicate()[1][-3000:]  # it still served
        p.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(p.communicate, timeout=60)
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]

    # the replay paced (12 s of ticks in 4 s), so that the orders' process stops mid-way
    procs = [start(*DOWNSTREAM), start(*UPSTREAM, "--feed", f"replay:{path}", "--speed", "3")]
    try:
        while len(await fills_of(data) if (data / "log.sqlite").exists() else []) < 10:
            for p in procs:
                assert p.poll() is None, p.communicate()[1][-3000:]
            await asyncio.sleep(0.1)
        await stop(procs[0])  # the orders' process stops; the feed's goes on
        await asyncio.sleep(0.5)
        procs[0] = start(*DOWNSTREAM)  # and starts again from its committed offsets
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
