"""A trader cancels one resting order of a running system, over HTTP and from the command
line: that order is cancelled (reason ``user``), no other, a closed order is refused, and
a restart rebuilds the same book from the log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from alpha_panda.domain.events import CancelRequested, MarketTick, OrderCancelled, Signal
from alpha_panda.domain.values import OrderType
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.control import PipelineControl
from alpha_panda.services.logs import open_log
from alpha_panda.strategy.base import CancelOrder, Context, Strategy, StrategyParams
from alpha_panda.testing.pipeline import logged
from tests.integration.pipeline.test_kill_switch import (
    TOKENS,
    free_port,
    run_rester,
    settings,
    until,
)

RESTING = 2 * len(TOKENS)  # the Rester strategy's buy and sell limits, per instrument


async def test_a_cancelled_order_goes_and_stays_gone_and_no_other_does(tmp_path: Path) -> None:
    system, task, port = await run_rester(tmp_path)
    book = system.pipeline.paper.exchange.exchange_for("rest")
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        async def orders(status: str) -> list[dict[str, object]]:
            r = await client.get("/api/v1/orders/paper", params={"status": status})
            return r.json()  # type: ignore[no-any-return]

        deadline = asyncio.get_running_loop().time() + 20
        while len(await orders("SUBMITTED")) < RESTING:
            assert asyncio.get_running_loop().time() < deadline, "read model never caught up"
            await asyncio.sleep(0.1)
        target = str((await orders("SUBMITTED"))[0]["order_id"])
        market = str((await orders("FILLED"))[0]["order_id"])

        resp = await client.post(f"/api/v1/orders/paper/{target}/cancel")
        assert resp.status_code == 202, resp.text
        assert (resp.json()["status"], resp.json()["order_status"]) == ("requested", "SUBMITTED")
        await until(lambda: len(book.open_orders()) == RESTING - 1)
        assert target not in {o.order_id for o in book.open_orders()}

        deadline = asyncio.get_running_loop().time() + 20
        while not (shown := [o for o in await orders("CANCELLED") if o["order_id"] == target]):
            assert asyncio.get_running_loop().time() < deadline, "cancel never shown"
            await asyncio.sleep(0.1)
        assert shown[0]["reason"] == "user"
        assert (shown[0]["cancel_requested_by"], shown[0]["cancel_requested_at"],
                shown[0]["cancel_refused"]) == ("api", resp.json()["requested_at"], None)
        again = await client.post(f"/api/v1/orders/paper/{target}/cancel")
        assert again.status_code == 409 and "CANCELLED" in again.json()["detail"]
        filled = await client.post(f"/api/v1/orders/paper/{market}/cancel")
        assert filled.status_code == 409 and "FILLED" in filled.json()["detail"]

        # from another terminal: a closed order is refused, an open one is cancelled
        cli = [sys.executable, "-m", "alpha_panda.cli", "cancel", "--data-dir",
               str(tmp_path / "data")]
        refused = await asyncio.to_thread(subprocess.run, [*cli, market], capture_output=True,
                                          text=True, timeout=60, check=False)
        assert refused.returncode == 2
        assert f"order {market} is FILLED: nothing is left of it to cancel" in refused.stderr
        second = next(o.order_id for o in book.open_orders())
        done = await asyncio.to_thread(subprocess.run, [*cli, second], capture_output=True,
                                       text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert f"cancel requested for paper order {second} (SUBMITTED)" in done.stdout
        await until(lambda: len(book.open_orders()) == RESTING - 2)
    system.stop.set()
    await task

    cancelled = await logged(tmp_path / "data", "paper.orders.cancelled", OrderCancelled)
    assert sorted((c.order_id, c.reason) for c in cancelled) == sorted(
        [(target, "user"), (second, "user")])
    log = open_log("embedded", tmp_path / "data")
    await log.start()
    try:
        control = PipelineControl(log)
        states = {o: await control.order_state("paper", o) for o in (target, market)}
        assert {o: (s.status if s else None) for o, s in states.items()} == {
            target: "CANCELLED", market: "FILLED"}
        assert await control.order_state("paper", "no-such-order") is None
    finally:
        await log.close()

    # a restart rebuilds the book from the log: the same orders are open, the two are not
    again = SystemRun(settings(tmp_path, free_port()), RunOptions(progress=False))
    task = asyncio.create_task(again.run())
    await until(lambda: again.pipeline is not None and again.pipeline.health.ready())
    rebuilt = {o.order_id for o in again.pipeline.paper.exchange.exchange_for("rest").open_orders()}
    assert len(rebuilt) == RESTING - 2 and not {target, second} & rebuilt
    again.stop.set()
    await task


class Requote(Strategy):
    """Buys 4 at market, rests a buy limit 8% below at its 40th tick, and cancels every
    order it has working at its 80th."""

    class Params(StrategyParams):
        pass

    def setup(self) -> None:
        self.step = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        self.step += 1
        if self.step == 1:
            return [ctx.buy(4)]
        if self.step == 40:
            t = ctx.tick_size(tick.close or tick.last_price)
            return [ctx.buy(2, order_type=OrderType.LIMIT,
                            limit_price=tick.last_price * 92 // 100 // t * t)]
        if self.step == 80:
            return [ctx.cancel(o) for o in ctx.open_orders()]
        return None


async def test_a_strategy_cancels_its_resting_orders_and_sees_them_gone(tmp_path: Path) -> None:
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "q.yaml").write_text(
        f"id: q\nstrategy: {__name__}:Requote\ninstruments: {TOKENS}\nbrokers: [paper]\n")
    system = SystemRun(settings(tmp_path, free_port()), RunOptions(progress=False))
    task = asyncio.create_task(system.run())
    await until(lambda: system.pipeline is not None and system.pipeline.runner is not None)
    runner = system.pipeline.runner
    contexts = [slot.ctx for slot in runner._slots["q"]]
    book = system.pipeline.paper.exchange.exchange_for("q")
    await until(lambda: len(book.open_orders()) == len(TOKENS))
    resting = {o.order_id for o in book.open_orders()}
    await until(lambda: all(c.filled() == 4 and c.open_orders() == [] and c.position() == 4
                            for c in contexts))
    assert book.open_orders() == []
    system.stop.set()
    await task

    cancelled = await logged(tmp_path / "data", "paper.orders.cancelled", OrderCancelled)
    assert sorted((c.order_id, c.reason, c.leaves_quantity) for c in cancelled) == sorted(
        (o, "strategy", 2) for o in resting)
    requests = await logged(tmp_path / "data", "paper.control", CancelRequested)
    assert sorted((r.order_id, r.requested_by, r.reason) for r in requests) == sorted(
        (o, "strategy:q", "strategy") for o in resting)

    # a restart rebuilds what the strategy sees and the book from the log
    again = SystemRun(settings(tmp_path, free_port()), RunOptions(progress=False))
    task = asyncio.create_task(again.run())
    await until(lambda: again.pipeline is not None and again.pipeline.health.ready())
    contexts = [slot.ctx for slot in again.pipeline.runner._slots["q"]]
    await until(lambda: all(c.filled() == 4 for c in contexts))
    assert all(c.open_orders() == [] and c.position() == 4 for c in contexts)
    assert again.pipeline.paper.exchange.exchange_for("q").open_orders() == []
    again.stop.set()
    await task
