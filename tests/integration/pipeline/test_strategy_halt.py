"""The trader halts one strategy over HTTP: its positions are flattened through the normal
order path, what it signals goes nowhere while the other strategy trades on, the halt
survives a restart because it is an event on the log, and it can be put back in service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from alpha_panda.domain.events import OrderFilled, SignalRejected
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.testing.pipeline import logged, write_strategy
from tests.integration.pipeline.test_kill_switch import TOKENS, free_port, settings, until


def status(system: SystemRun) -> dict[str, str]:
    assert system.pipeline is not None and system.pipeline.runner is not None
    return {s.id: s.state for s in system.pipeline.runner.statuses()}


async def test_halting_one_strategy_flattens_it_and_leaves_the_other_trading(
        tmp_path: Path) -> None:
    write_strategy(tmp_path / "strategies", id="h", tokens=TOKENS, quantity=4)
    write_strategy(tmp_path / "strategies", id="other", tokens=TOKENS, quantity=1)
    port = free_port()
    system = SystemRun(settings(tmp_path, port), RunOptions(progress=False))
    task = asyncio.create_task(system.run())
    await until(lambda: system.pipeline is not None and "paper" in system.pipeline.portfolios)
    portfolio = system.pipeline.portfolios["paper"]
    await until(lambda: portfolio.snapshot("h").open_positions > 0
                and portfolio.snapshot("other").fills > 0)
    await until(lambda: system.pipeline.health.ready())
    await asyncio.sleep(0.5)  # the read model, with both strategies, reaches the cache
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        resp = await client.post("/api/v1/strategies/h/halt", json={"flatten": True})
        assert resp.status_code == 200, resp.text
        assert {k: resp.json()[k] for k in ("strategy_id", "active", "flatten", "brokers")} == {
            "strategy_id": "h", "active": True, "flatten": True, "brokers": ["paper"]}
        await until(lambda: status(system)["h"] == "HALTED")
        await until(lambda: portfolio.snapshot("h").open_positions == 0)
        fills_h, fills_other = portfolio.snapshot("h").fills, portfolio.snapshot("other").fills
        await until(lambda: portfolio.snapshot("other").fills > fills_other + 5)
        assert portfolio.snapshot("h").fills == fills_h  # nothing more of it reached the venue
        assert status(system)["other"] == "ACTIVE"
        await asyncio.sleep(0.5)
        shown = {s["id"]: s["status"] for s in (await client.get("/api/v1/strategies")).json()}
        assert shown == {"h": "HALTED", "other": "ACTIVE"}
        assert (await client.post("/api/v1/strategies/nope/halt", json={})).status_code == 404
        vague = await client.post("/api/v1/strategies/h/halt", json={"active": "no"})
        assert vague.status_code == 422  # not read as false: it stays halted
    system.stop.set()
    await task
    flattens = [f for f in await logged(tmp_path / "data", "paper.orders.filled", OrderFilled)
                if f.strategy_id == "h" and f.origin == "flatten"]
    assert flattens
    # a signal of it already on its way when it was halted is rejected, not placed
    rejected = await logged(tmp_path / "data", "paper.signals.rejected", SignalRejected)
    assert {r.reason_code for r in rejected if r.signal.strategy_id == "h"} <= {"STRATEGY_HALTED"}

    # after a restart it is still halted, flat, and trades again once put back in service
    port = free_port()
    again = SystemRun(settings(tmp_path, port), RunOptions(progress=False))
    task = asyncio.create_task(again.run())
    await until(lambda: again.pipeline is not None and "paper" in again.pipeline.portfolios)
    await until(lambda: again.pipeline.health.ready())
    portfolio = again.pipeline.portfolios["paper"]
    assert status(again)["h"] == "HALTED" and portfolio.snapshot("h").open_positions == 0
    fills_h = portfolio.snapshot("h").fills
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        resp = await client.post("/api/v1/strategies/h/halt", json={"active": False})
        assert resp.status_code == 200, resp.text
    await until(lambda: status(again)["h"] == "ACTIVE")
    await until(lambda: portfolio.snapshot("h").fills > fills_h)
    again.stop.set()
    await task
