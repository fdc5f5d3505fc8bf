"""A stop (Ctrl-C, SIGTERM, ``--duration``) lets the services take what is in flight before
they stop: the run ends with every group at the end of what it reads, and the portfolio
showing every fill on the log. (They used to stop at once: the portfolio a few fills short
of the engine until the next start.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alpha_panda.domain.events import OrderFilled
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.settings import ApiSettings, SimulatorSettings
from alpha_panda.testing.pipeline import drained_beside, logged, write_strategy
from tests.integration.pipeline.test_kill_switch import TOKENS, free_port, settings, until


async def test_a_stop_mid_stream_leaves_nothing_in_flight(tmp_path: Path) -> None:
    write_strategy(tmp_path / "strategies", id="k", tokens=TOKENS, quantity=1)
    s = settings(tmp_path, free_port()).model_copy(update={
        "api": ApiSettings(enabled=False), "simulator": SimulatorSettings(rate=5000, seed=5)})
    system = SystemRun(s, RunOptions(progress=False))
    task = asyncio.create_task(system.run())
    await until(lambda: system.pipeline is not None and "paper" in system.pipeline.portfolios)
    assert system.pipeline is not None
    portfolio = system.pipeline.portfolios["paper"]
    await until(lambda: portfolio.fills >= 50)
    system.stop.set()  # as Ctrl-C does, with ticks, signals and fills flowing
    await task
    assert system.pipeline.paper is not None
    # every group of the pipeline at the end of every topic it reads, on the file as left
    await drained_beside(s, 0, timeout=1.0)
    fills = await logged(tmp_path / "data", "paper.orders.filled", OrderFilled)
    assert portfolio.fills == len(fills) == system.pipeline.paper.fills
