"""Replaying a tick file through the live pipeline gives exactly the backtest's fills and P&L."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alpha_panda.backtest.engine import run_backtest
from alpha_panda.backtest.result import BacktestResult
from alpha_panda.domain.clock import NS, ist_date, ist_ns
from alpha_panda.domain.events import (
    CODEC,
    Envelope,
    MarketTick,
    OrderFilled,
    PnlSnapshot,
    Signal,
)
from alpha_panda.domain.values import OrderType, Product, Side, to_paise
from alpha_panda.execution.costs import CostModel
from alpha_panda.marketdata.files import load_ticks, tick_source
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.logs import open_log
from alpha_panda.services.risk_config import risk_config_for
from alpha_panda.services.summary import run_summary
from alpha_panda.strategy import Context, Strategy, StrategyParams
from alpha_panda.strategy.config import load_strategy_dir
from alpha_panda.testing.pipeline import read_all, settings_for, write_strategy
from tests.unit.execution.cnc_books import cnc_books, expected_cnc_books

FIGURES = ("ticks", "fills", "round_trips", "realized_pnl", "unrealized_pnl", "charges", "net_pnl",
           "win_rate", "gross_win_rate", "exposure", "sharpe", "initial_equity", "final_equity",
           "open_positions", "signals", "signals_rejected", "orders", "orders_rejected",
           "orders_cancelled", "rejections", "strategies", "strategies_failed", "max_drawdown",
           "max_drawdown_pct", "max_gross_exposure")
# (the figures of the equity curve too: a replay's is recomputed in event time at the
# backtest's sampling times, from its fills and the file's prices)


@dataclass
class Both:
    """One tick file through the backtest and through the pipeline."""

    backtest: BacktestResult
    live: dict[str, Any]  # the run summary
    live_fills: list[OrderFilled]  # off the log, by fill id
    snapshots: list[Envelope[PnlSnapshot]]  # the account's, off the log
    system: SystemRun  # the pipeline's run


async def both(tmp_path: Path, path: Path, strategies: Path, *,
               speed: float | None = None) -> Both:
    """``speed``: the replay paced (x real time), as a live feed gives the ticks."""
    settings = settings_for(tmp_path, path).model_copy(update={"strategies_dir": strategies})
    configs, errors = load_strategy_dir(strategies)
    assert not errors
    backtest = run_backtest(configs, load_ticks(path), source=tick_source(path),
                            initial_cash=settings.paper.initial_cash,
                            risk=risk_config_for(settings, "paper", configs))
    system = SystemRun(settings, RunOptions(exit_at_end=True, progress=False, summary=True,
                                            speed=speed))
    await system.run()
    log = open_log(settings.log, settings.data_dir)
    await log.start()
    try:
        records = await read_all(log, "paper.orders.filled")
        snapshots = [CODEC.decode_as(r.value, PnlSnapshot)
                     for r in await read_all(log, "paper.pnl.snapshots") if r.key == b"account"]
    finally:
        await log.close()
    live_fills = sorted((CODEC.decode_as(r.value, OrderFilled).data for r in records),
                        key=lambda f: f.fill_id)
    return Both(backtest, run_summary(system), live_fills, snapshots, system)


@pytest.mark.parametrize("costs", [True, False])
async def test_pipeline_replay_equals_backtest(tmp_path: Path, tick_file, costs: bool) -> None:
    path, cols = tick_file(8000, 4, seed=11)
    tokens = sorted(set(cols.instrument_token.tolist()))
    write_strategy(tmp_path / "strategies", id="a", tokens=tokens[:2], costs=costs)
    write_strategy(tmp_path / "strategies", id="b", tokens=tokens, quantity=3, costs=costs)
    run = await both(tmp_path, path, tmp_path / "strategies")
    live, backtest = run.live, run.backtest
    assert {k: live[k] for k in FIGURES} == {k: backtest.summary[k] for k in FIGURES}
    assert list(live) == [*backtest.summary, "ticks_published", "strategies_invalid",
                          "dead_letters", "dead_letters_by_topic"]
    assert live["ticks_published"] == 8000 and live["sharpe"] is None  # one trading day
    assert live["dead_letters"] == 0 and live["dead_letters_by_topic"] == {}
    # per strategy: the account's figures, strategy by strategy
    assert list(live["strategies"]) == ["a", "b"]
    per = live["strategies"].values()
    assert sum(f["fills"] for f in per) == live["fills"] and all(f["fills"] > 0 for f in per)
    assert sum(Decimal(f["net_pnl"]) for f in per) == Decimal(live["net_pnl"])
    assert live["signals"] == live["orders"] == live["fills"] > 20
    assert 0 < live["exposure"] < 1
    if costs:  # tiny gains, each under its trip's charges: wins before charges only
        assert live["gross_win_rate"] == 0.274684 and live["win_rate"] == 0.0
    else:
        assert live["gross_win_rate"] == live["win_rate"] == 0.274684

    # The projector's account snapshots are on the log all the same, one at least per fill;
    # the curve from them (in processing order) is not the summary's
    snaps = sorted(run.snapshots, key=lambda e: e.ts)
    assert len(snaps) >= live["fills"] and Decimal(live["max_drawdown"]) > 0
    assert run.live_fills == sorted(backtest.fills, key=lambda f: f.fill_id)
    assert len(run.live_fills) > 20


class ScriptParams(StrategyParams):
    script: tuple[dict[str, Any], ...] = ()


class Scripted(Strategy):
    """Sends the market orders of its script (product default CNC, with a bracket's ``tp``
    and ``sl`` when given; a limit order at ``limit``), each at its instrument's ``at``-th
    tick (of instrument ``token`` only, when given)."""

    Params = ScriptParams
    params: ScriptParams

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        i, self.n = self.n, self.n + 1
        return [ctx.signal(Side(a["side"]), a["qty"], product=Product(a.get("product", "CNC")),
                           take_profit=to_paise(a["tp"]) if "tp" in a else None,
                           stop_loss=to_paise(a["sl"]) if "sl" in a else None,
                           **({"order_type": OrderType.LIMIT, "limit_price": to_paise(a["limit"])}
                              if "limit" in a else {}))
                for a in self.params.script
                if a["at"] == i and a.get("token", self.instrument_token) == self.instrument_token
                ] or None


BRACKET_YAML = """\
id: {id}
strategy: "{module}:Scripted"
instruments: [{token}]
params: {{script: [{{at: 5, side: BUY, qty: 4, product: {product}, tp: "1720", sl: "1690"}}]}}
"""


def _bracket_ticks(path: Path) -> Path:
    """Three instruments, one tick a second each. 341249 from 10:00: 1700 for ticks 0-5,
    1685 (the stop) from tick 6, 1725 (the target) from tick 1500. 738561 from 15:19:50:
    1700, 1685 (the stop) from tick 6, 1725 from 15:20 (the MIS cut-off). 408065 the same,
    without the stop: its MIS position is open at the cut-off."""
    day = date(2026, 12, 1)
    rows = []
    t10 = ist_ns(day, time(10, 0))
    rows += [(t10 + k * NS, 341249, "1700.00" if k <= 5 else "1685.00" if k < 1500 else "1725.00")
             for k in range(3000)]
    t1519 = ist_ns(day, time(15, 19, 50))
    for token, stop in ((738561, "1685.00"), (408065, "1700.00")):
        rows += [(t1519 + k * NS, token, "1700.00" if k <= 5 else stop if k < 10 else "1725.00")
                 for k in range(600)]
    rows.sort()
    path.write_text("timestamp,instrument_token,last_price\n"
                    + "".join(f"{ts},{tok},{px}\n" for ts, tok, px in rows))
    return path


async def test_pipeline_replay_of_bracket_orders_equals_backtest(tmp_path: Path) -> None:
    # The paper engine gets the signal after many later ticks: the bracket legs, and the
    # MIS square-off, must come out as in the backtest (the stop, not the later target).
    path = _bracket_ticks(tmp_path / "brackets.csv")
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    for sid, token, product in (("cnc", 341249, "CNC"), ("mis", 738561, "MIS"),
                                ("open", 408065, "MIS")):
        (strategies / f"{sid}.yaml").write_text(
            BRACKET_YAML.format(id=sid, module=__name__, token=token, product=product))
    run = await both(tmp_path, path, strategies)
    backtest = run.backtest
    assert {k: run.live[k] for k in FIGURES} == {k: backtest.summary[k] for k in FIGURES}
    # cnc: bought at 1700, stopped at 1685; mis: the same; open: squared off at 1725
    assert backtest.summary["realized_pnl"] == "-20.00"  # -60 - 60 + 100
    assert backtest.summary["fills"] == 6
    assert run.live_fills == sorted(backtest.fills, key=lambda f: f.fill_id)


EXITS_YAML = """\
id: {id}
strategy: "{module}:Scripted"
instruments: [{token}]
params: {{script: [{{at: 5, side: BUY, qty: 10, product: {product}, {entry}}},
                   {{at: 8, side: SELL, qty: {exit}, product: {product}}}]}}
"""


async def test_pipeline_replay_of_exits_of_brackets_and_resting_entries_equals_backtest(
        tmp_path: Path) -> None:
    # A partial exit cuts the bracket's legs to what is left (the stop sells 6, not 10), a
    # CNC exit of a bracketed position passes and takes the legs with it, and an exit
    # smaller than a resting entry places the entry again smaller: on the pipeline (paced,
    # so that the runner knows its entry rests before it exits) as in the backtest.
    day = date(2026, 12, 1)
    t10 = ist_ns(day, time(10, 0))
    path = tmp_path / "exits.csv"
    path.write_text("timestamp,instrument_token,last_price\n" + "".join(
        f"{t10 + k * NS},{token},{'1700.00' if k < 20 else '1685.00'}\n"
        for k in range(40) for token in (341249, 408065, 738561)))
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    bracket = 'tp: "1720", sl: "1690"'
    for sid, token, product, entry, qty in (
            ("part", 341249, "MIS", bracket, 4), ("cnc", 738561, "CNC", bracket, 10),
            ("trim", 408065, "MIS", 'limit: "1690"', 4)):
        (strategies / f"{sid}.yaml").write_text(EXITS_YAML.format(
            id=sid, module=__name__, token=token, product=product, entry=entry, exit=qty))
    # and an exit the risk manager refuses (a limit buy of another instrument rests: one open
    # order already) leaves the stop protecting the position
    (strategies / "refused.yaml").write_text(
        f'id: refused\nstrategy: "{__name__}:Scripted"\ninstruments: [341249, 408065]\n'
        "risk: {max_open_orders: 1}\n"
        "params: {script: [{at: 5, token: 341249, side: BUY, qty: 10, product: MIS, "
        'tp: "1720", sl: "1690"}, {at: 6, token: 408065, side: BUY, qty: 1, product: MIS, '
        'limit: "1600"}, {at: 8, token: 341249, side: SELL, qty: 10, product: MIS}]}\n')
    run = await both(tmp_path, path, strategies, speed=20)
    backtest = run.backtest
    assert {k: run.live[k] for k in FIGURES} == {k: backtest.summary[k] for k in FIGURES}
    assert run.live_fills == sorted(backtest.fills, key=lambda f: f.fill_id)
    got = sorted((f.strategy_id, f.side, f.quantity, f.price, f.origin) for f in backtest.fills)
    assert got == sorted([
        ("part", Side.BUY, 10, 1700_00, "signal"), ("part", Side.SELL, 4, 1700_00, "signal"),
        ("part", Side.SELL, 6, 1685_00, "bracket"),
        ("cnc", Side.BUY, 10, 1700_00, "signal"), ("cnc", Side.SELL, 10, 1700_00, "signal"),
        ("trim", Side.BUY, 6, 1690_00, "signal"),
        ("refused", Side.BUY, 10, 1700_00, "signal"),
        ("refused", Side.SELL, 10, 1685_00, "bracket")])
    assert backtest.summary["rejections"] == {"MAX_OPEN_ORDERS": 1}


async def test_pipeline_replay_of_partial_fills_by_volume_equals_backtest(
        tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(6000, 3, seed=5)
    tokens = sorted(set(cols.instrument_token.tolist()))
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "v.yaml").write_text(
        f"id: v\nstrategy: sma_cross\ninstruments: {tokens}\nproduct: MIS\n"
        "params: {fast: 3, slow: 8, quantity: 40}\n"
        "execution: {costs: true, volume_participation: 0.05}\n")
    run = await both(tmp_path, path, strategies)
    live, backtest = run.live, run.backtest
    # An order that reaches the lagging paper engine late catches up on its ticks before
    # the next order is placed, so two overlapping orders' part fills come off the log one
    # order after the other, not interleaved tick by tick as in the backtest: round trips
    # (and win rates) are counted over the fills in event-time order, so they agree too.
    assert {k: live[k] for k in FIGURES} == {k: backtest.summary[k] for k in FIGURES}
    assert live["rejection_messages"] == backtest.summary["rejection_messages"]
    assert run.live_fills == sorted(backtest.fills, key=lambda f: f.fill_id)
    # orders of 40 against 5% of trades of 1-500: most fill in parts
    parts = [f for f in run.live_fills if f.quantity < f.cumulative_quantity + f.leaves_quantity]
    assert len(parts) > len(run.live_fills) // 2 > 20


CNC_YAML = """\
id: cnc
strategy: "{module}:Scripted"
instruments: [341249, 738561]
params: {{script: [{{at: 5, side: BUY, qty: 10}}, {{at: 10, side: SELL, qty: 4}},
                   {{at: 32, side: SELL, qty: 3}}, {{at: 34, side: SELL, qty: 3}},
                   {{at: 40, side: BUY, qty: 5}}, {{at: 50, side: SELL, qty: 5}}]}}
"""


async def test_pipeline_replay_of_cnc_same_day_and_next_day_trades_equals_backtest(
        tmp_path: Path) -> None:
    # Day 1: buy 10, sell 4 (4 netted at intraday rates, 6 held). Day 2: sell 3 and 3 from
    # holdings (one DP charge per scrip), buy 5 and sell 5 (netted). Two scrips.
    rows = []
    for day in (date(2026, 12, 1), date(2026, 12, 2)):
        t10 = ist_ns(day, time(10, 0))
        for token, base in ((341249, 1700_00), (738561, 250_00)):
            rows += [(t10 + k * NS, token, base + 5 * (k % 7)) for k in range(30)]
    rows.sort()
    path = tmp_path / "cnc.csv"
    path.write_text("timestamp,instrument_token,last_price\n"
                    + "".join(f"{ts},{tok},{px / 100:.2f}\n" for ts, tok, px in rows))
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "cnc.yaml").write_text(CNC_YAML.format(module=__name__))
    run = await both(tmp_path, path, strategies)
    backtest = run.backtest
    same = FIGURES  # the two-day Sharpe too: both from the equity at the same event times
    assert {k: run.live[k] for k in same} == {k: backtest.summary[k] for k in same}
    assert run.live_fills == sorted(backtest.fills, key=lambda f: f.fill_id)
    assert backtest.summary["fills"] == 12
    fills = run.live_fills
    assert sum(f.charges.dp for f in fills) == 2 * 15_34  # day 2, once per scrip (₹13 + GST)
    # the summary's charges are the fills', DP included, netted as the rate card says
    assert Decimal(backtest.summary["charges"]) * 100 == sum(f.charges.total for f in fills)
    costs = CostModel.load(as_of=date(2026, 12, 1))
    assert cnc_books(fills) == expected_cnc_books(fills, costs)


class CarryParams(StrategyParams):
    script: tuple[dict[str, Any], ...] = ()
    product: str = "CNC"


class ClosesNextDay(Strategy):
    """Sends the market orders of its script (``at``: its tick, ``side``, ``qty``); at its
    first tick of a later IST day, closes what ``ctx.position()`` says it holds."""

    Params = CarryParams
    params: CarryParams

    def setup(self) -> None:
        self.n = 0
        self.day: date | None = None

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        day, i, self.n = ist_date(tick.ts), self.n, self.n + 1
        product = Product(self.params.product)
        first, self.day = self.day is not None and day != self.day, day
        if first and ctx.position():
            held = ctx.position()
            return [ctx.signal(Side.SELL if held > 0 else Side.BUY, abs(held), product=product)]
        return [ctx.signal(Side(a["side"]), a["qty"], product=product)
                for a in self.params.script if a["at"] == i] or None


@pytest.mark.parametrize(("product", "script", "held", "expired"), [
    ("CNC", [("BUY", 500)], 110, 1),  # 110 filled, 390 expire
    # 110 bought and 108 sold, 90 and 192 expire: on its way, the sell of 2 reverses -100
    ("NRML", [("BUY", 200), ("SELL", 300)], 2, 2),
    # 100 bought, 10 of a sell of 20 sold: the close sells 90, the 10 reserved free again
    ("CNC", [("BUY", 100)] + [None] * 49 + [("SELL", 20)], 90, 1)])
async def test_pipeline_replay_of_part_fills_expired_at_the_close_equals_backtest(
        tmp_path: Path, product: str, script: list[tuple[str, int] | None], held: int,
        expired: int) -> None:
    # Market orders fill in parts by volume (20% of trades of 10: 2 a tick) until the close
    # expires their rest; the next day's first tick closes what the strategy holds. The
    # venue's expiry comes with that tick: the runner must count the orders ended there (the
    # backtest's exchange sees the tick before the strategy), not close the 500 (or the
    # -100) it meant to hold; the risk manager too, not refuse the close as reversing what
    # it counts on its way; and the paper engine, reading the close before that tick, not
    # refuse it as short of the holdings an expired CNC sell reserved.
    rows = []
    for day, start, n in ((date(2026, 12, 1), time(15, 29), 60),
                          (date(2026, 12, 2), time(9, 15), 80)):
        t0 = ist_ns(day, start)
        rows += [(t0 + k * NS, 1700_00 + 5 * (k % 7)) for k in range(n)]
    path = tmp_path / "close.csv"
    path.write_text("timestamp,instrument_token,last_price,volume\n"
                    + "".join(f"{ts},341249,{px / 100:.2f},10\n" for ts, px in rows))
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    orders = ", ".join(f"{{at: {4 + k}, side: {a[0]}, qty: {a[1]}}}"
                       for k, a in enumerate(script) if a is not None)
    (strategies / "carry.yaml").write_text(
        f'id: carry\nstrategy: "{__name__}:ClosesNextDay"\ninstruments: [341249]\n'
        f"params: {{product: {product}, script: [{orders}]}}\n"
        "execution: {volume_participation: 0.2}\n")
    # paced: the night passes in 0.64 s, every fill of the first day is read by the second
    run = await both(tmp_path, path, strategies, speed=100_000)
    backtest = run.backtest
    fills = sorted(backtest.fills, key=lambda f: f.ts)
    day2 = ist_ns(date(2026, 12, 2), time(0))
    closes = [f for f in fills if f.ts > day2]
    assert {f.side for f in closes} == {Side.SELL} and sum(f.quantity for f in closes) == held
    assert backtest.summary["orders_cancelled"] == expired
    assert backtest.summary["rejections"] == {} and backtest.summary["open_positions"] == 0
    assert {k: run.live[k] for k in FIGURES} == {k: backtest.summary[k] for k in FIGURES}
    assert run.live_fills == sorted(backtest.fills, key=lambda f: f.fill_id)
