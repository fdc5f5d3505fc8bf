"""What a running system's ``/metrics`` says about the process: its role and build (the
``alpha_panda_process_info`` series had no label at all: nothing called for them)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from alpha_panda import __version__
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.settings import ApiSettings, Settings, SimulatorSettings
from alpha_panda.testing.pipeline import write_strategy
from alpha_panda.testing.redis_server import free_port


async def test_a_running_system_names_itself_in_process_info(tmp_path: Path) -> None:
    write_strategy(tmp_path / "strategies", tokens=[738561, 341249])
    port = free_port()
    settings = Settings().model_copy(update={
        "data_dir": tmp_path / "data", "strategies_dir": tmp_path / "strategies",
        "api": ApiSettings(port=port), "simulator": SimulatorSettings(rate=500, seed=5)})
    system = SystemRun(settings, RunOptions(progress=False))
    task = asyncio.create_task(system.run())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(400):
                try:
                    if (await client.get("/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            text = (await client.get("/metrics")).text
    finally:
        system.stop.set()
        await task
    [info] = re.findall(r"^alpha_panda_process_info\{(.*)\} 1\.0$", text, re.MULTILINE)
    labels = dict(re.findall(r'(\w+)="([^"]*)"', info))
    assert labels["service"] == "run" and labels["version"] == __version__
    assert labels["log"] == "embedded" and labels["feed"] == "sim" and labels["live"] == "false"
