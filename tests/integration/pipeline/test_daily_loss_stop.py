"""The daily-loss stop through the whole pipeline, paced as a live feed is: the same stop,
at the same tick, and the same fills as the backtest's; the strategy is back the next day."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

from alpha_panda.domain.clock import NS, ist_date, ist_ns
from alpha_panda.domain.events import MarketTick, Signal, StrategyHalted
from alpha_panda.domain.values import Product, Side
from alpha_panda.services.risk_manager import STOP_BY
from alpha_panda.strategy import Context, Strategy, StrategyParams
from alpha_panda.testing.pipeline import logged
from tests.integration.pipeline.test_parity import both

TOKEN = 738561


class FifthParams(StrategyParams):
    quantity: int = 100


class BuyTheFifth(Strategy):
    """Buys ``quantity`` at the fifth tick of each IST day it sees (it sees every tick, even
    halted: what it asks then goes nowhere)."""

    Params = FifthParams
    params: FifthParams

    def setup(self) -> None:
        self.day: date | None = None
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        day = ist_date(tick.ts)
        if day != self.day:
            self.day, self.n = day, 0
        self.n += 1
        if self.n == 5:
            return [ctx.signal(Side.BUY, self.params.quantity, product=Product.CNC)]
        return None


YAML = f"""\
id: fifth
strategy: "{__name__}:BuyTheFifth"
instruments: [{TOKEN}]
product: CNC
risk: {{daily_loss: 150000, daily_loss_flatten: true}}
"""


def ticks(path: Path) -> Path:
    """A tick every 2 s either side of midnight IST (the stop's day ends there): from
    23:55 on 6 April, ₹1,000 for 10 ticks, then ₹1 lower each tick; from 00:00 on the
    7th, ₹850 for 20 ticks, then 5 paise higher each."""
    rows = []
    start = ist_ns(date(2026, 4, 6), time(23, 55))
    for k in range(150):
        rows.append((start + 2 * k * NS, 1000_00 if k < 10 else (1000 - (k - 9)) * 100))
    midnight = ist_ns(date(2026, 4, 7), time(0, 0))
    for k in range(150):
        rows.append((midnight + 2 * k * NS, 850_00 if k < 20 else 850_00 + 5 * (k - 19)))
    path.write_text("timestamp,instrument_token,last_price\n"
                    + "".join(f"{ts},{TOKEN},{px / 100:.2f}\n" for ts, px in rows))
    return path


async def test_a_paced_replay_stops_where_the_backtest_does(tmp_path: Path) -> None:
    path = ticks(tmp_path / "ticks.csv")
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "fifth.yaml").write_text(YAML)
    # paced, ~6 s: a tick every 20 ms of wall time, as a live feed gives them
    run = await both(tmp_path, path, strategies, speed=100.0)
    backtest, live = run.backtest, run.live
    # bought 100 at ₹1,000 at the fifth tick; ₹1,500 down with the charges at ₹986 (tick 24,
    # 23:55:46): stopped, and sold at market, ₹986; the next day, bought at ₹850
    stops = backtest.summary["daily_loss_stops"]
    assert [(s["strategy_id"], s["time"]) for s in stops] == [
        ("fifth", "2026-04-06T23:55:46.000+05:30")]
    assert stops[0]["message"].startswith("daily loss ₹1,5")
    fills = sorted(backtest.fills, key=lambda f: f.ts)
    assert [(f.side, f.quantity, f.price) for f in fills] == [
        (Side.BUY, 100, 1000_00), (Side.SELL, 100, 986_00), (Side.BUY, 100, 850_00)]
    assert fills[1].origin == "flatten"

    assert live["daily_loss_stops"] == stops
    assert run.live_fills == sorted(backtest.fills, key=lambda f: f.fill_id)
    for key in ("fills", "realized_pnl", "unrealized_pnl", "charges", "net_pnl",
                "open_positions"):
        assert live[key] == backtest.summary[key], key
    halts = [h for h in await logged(tmp_path / "data", "paper.control", StrategyHalted)
             if h.requested_by == STOP_BY]
    assert [(h.strategy_id, h.flatten, h.until) for h in halts] == [
        ("fifth", True, ist_ns(date(2026, 4, 7), time(0, 0)))]
    # back in service the next day (it bought again), as the dashboard shows it
    assert run.system.pipeline is not None and run.system.pipeline.runner is not None
    (status,) = run.system.pipeline.runner.statuses()
    assert (status.state, status.error) == ("ACTIVE", None)
