"""``service api`` alone reports the services of the other processes on ``/ready``, read
from their consumer groups' offsets on the log: it said 200 as soon as it served, whatever
the strategy runner or the engines did (none running, or far behind)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.settings import ApiSettings, RuntimeSettings, Settings
from alpha_panda.stream.topics import MARKET_TICKS
from alpha_panda.testing.pipeline import write_strategy
from tests.contract.helpers import tick_output

PORT = 8814


async def _append_ticks(data: Path, n: int) -> None:
    log = SqliteLog(data / "log.sqlite")
    await log.start()
    try:
        base = time.time_ns()
        await log.append([tick_output(MARKET_TICKS, base + i, token=1, id=f"extra-{base}-{i}")
                          for i in range(n)])
    finally:
        await log.close()


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@pytest.mark.timeout(240)
async def test_the_api_alone_is_not_ready_while_the_services_are_behind(
        tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(300, 2)
    strategies = tmp_path / "strategies"
    write_strategy(strategies, tokens=sorted(set(cols.instrument_token.tolist())))
    data = tmp_path / "data"
    env = {**os.environ, "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
    drain = [sys.executable, "-m", "alpha_panda.cli", "run", "--feed", f"replay:{path}",
             "--exit-at-end", "--no-api", "--data-dir", str(data), "--strategies", str(strategies)]
    first = await asyncio.to_thread(subprocess.run, drain, env=env, capture_output=True,
                                    text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    await _append_ticks(data, 50)  # no service runs to take them

    settings = Settings(data_dir=data, strategies_dir=strategies,
                        api=ApiSettings(port=PORT),
                        runtime=RuntimeSettings(ready_max_lag=10, ready_lag_grace_s=0.5))
    api = SystemRun(settings, RunOptions(progress=False), only="api")
    task = asyncio.create_task(api.run())
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}")
    answer: dict[str, Any] = {}

    async def ready(code: int) -> bool:
        try:
            got = await client.get("/ready")
        except httpx.TransportError:
            return False
        answer.update(got.json())
        return got.status_code == code

    try:
        await _until(lambda: ready(503), "not ready: the runner has 50 ticks to take")
        by_name = {c["name"]: c for c in answer["components"]}
        assert by_name["api"]["ready"]
        runner = by_name["strategy-runner"]
        assert not runner["ready"] and runner["lag"] == 50, runner
        assert {"paper.risk-manager", "paper.trading-engine", "paper.portfolio"} <= set(by_name)
        # the services run (a run of them all on the log) and take them: ready
        again = await asyncio.to_thread(subprocess.run, drain, env=env, capture_output=True,
                                        text=True, timeout=120, check=False)
        assert again.returncode == 0, again.stderr[-3000:]
        await _until(lambda: ready(200), "ready once every group has caught up")
        assert all(c["lag"] in (0, None) for c in answer["components"]), answer
        # then they fall behind (none running): past the limit for the grace, not ready
        await _append_ticks(data, 50)
        await _until(lambda: ready(503), "not ready once behind again")
        runner = {c["name"]: c for c in answer["components"]}["strategy-runner"]
        assert "records behind for" in runner["detail"], runner
    finally:
        api.stop.set()
        await task
        await client.aclose()
