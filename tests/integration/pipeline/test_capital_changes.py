"""A strategy added to or removed from the account between runs on one data dir moves its
capital (₹10 lakh a strategy on paper): a deposit or a withdrawal, not a gain or a loss. The
run summary's drawdown, Sharpe and final vs initial equity are the P&L's; the equity curve
steps with the capital and says so."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha_panda.domain.events import CODEC, PnlSnapshot
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.logs import open_log
from alpha_panda.services.summary import run_summary
from alpha_panda.settings import ApiSettings, Settings, SimulatorSettings
from alpha_panda.testing.pipeline import read_all, run_replay, settings_for, write_strategy

LAKH = 1_00_000_00  # paise
TOKENS = [738561, 341249, 1270529, 408065]


async def run(tmp_path: Path) -> tuple[SystemRun, dict[str, Any]]:
    """The simulator for 2.5 s (it goes on from the last run's ticks) with the strategies
    in ``tmp_path/strategies`` now."""
    settings = Settings().model_copy(update={
        "data_dir": tmp_path / "data", "strategies_dir": tmp_path / "strategies",
        "api": ApiSettings(enabled=False), "simulator": SimulatorSettings(rate=2000, seed=5),
    })
    system = SystemRun(settings, RunOptions(duration=2.5, progress=False, summary=True))
    await system.run()
    return system, run_summary(system)


async def pnl_curve(tmp_path: Path) -> list[int]:
    """The account's net P&L at each of its snapshots on the log, in time order: by its
    P&L figures alone, without its equity or capital."""
    log = open_log("embedded", tmp_path / "data")
    await log.start()
    try:
        snaps = [CODEC.decode_as(r.value, PnlSnapshot)
                 for r in await read_all(log, "paper.pnl.snapshots") if r.key == b"account"]
    finally:
        await log.close()
    snaps.sort(key=lambda e: e.ts)
    return [s.data.realized + s.data.unrealized - s.data.charges for s in snaps]


def drawdown(pnl: list[int]) -> int:
    """The largest fall of net P&L from its running high, from 0 at the start."""
    high, worst = 0, 0
    for p in pnl:
        high = max(high, p)
        worst = max(worst, high - p)
    return worst


def paise(rupees: str) -> int:
    return int(Decimal(rupees) * 100)


async def test_a_strategy_added_then_removed_moves_capital_not_pnl(tmp_path: Path) -> None:
    strategies = tmp_path / "strategies"
    write_strategy(strategies, id="a", tokens=TOKENS[:2])
    write_strategy(strategies, id="b", tokens=TOKENS[2:])
    _, first = await run(tmp_path)
    assert first["fills"] > 0 and first["initial_equity"] == "2000000.00"

    write_strategy(strategies, id="c", tokens=TOKENS)  # a third: ₹10 lakh more
    system, added = await run(tmp_path)
    curve = list(system.pipeline.portfolios["paper"].equity_curve)  # type: ignore[union-attr]
    capitals = [c for _, _, c in curve]
    assert capitals[0] == 20 * LAKH and capitals[-1] == 30 * LAKH  # read back, then made
    assert sorted(set(capitals)) == [20 * LAKH, 30 * LAKH]
    assert added["initial_equity"] == "3000000.00" and added["net_deposits"] == "1000000.00"
    pnl = await pnl_curve(tmp_path)
    net = paise(added["net_pnl"])
    # (counted as P&L, the first run's points, on ₹20 lakh, were ₹10 lakh under the ₹30 lakh
    # start: a 33% drawdown)
    assert paise(added["max_drawdown"]) == drawdown([*pnl, net])
    assert added["max_drawdown_pct"] < 0.1
    assert paise(added["final_equity"]) - paise(added["initial_equity"]) == net

    (strategies / "c.yaml").unlink()  # removed: its ₹10 lakh withdrawn
    _, removed = await run(tmp_path)
    pnl = await pnl_curve(tmp_path)
    net = paise(removed["net_pnl"])
    assert removed["initial_equity"] == "2000000.00" and removed["net_deposits"] == "0.00"
    # (counted as P&L, the withdrawal was a ₹10 lakh drawdown, a third of the high)
    assert paise(removed["max_drawdown"]) == drawdown([*pnl, net])
    assert removed["max_drawdown_pct"] < 0.1
    assert paise(removed["final_equity"]) - paise(removed["initial_equity"]) == net


async def test_the_curve_starts_at_the_capital_so_its_change_is_the_net_pnl(
        tmp_path: Path, tick_file) -> None:
    # The dashboard's "since" figure is the curve's last point less its first. Started at the
    # first fill's snapshot, the curve left out that fill's charges and first mark: a run
    # down ₹4.83 showed "+₹6.83 since 09:15:00", in green.
    path, cols = tick_file(3000, 2)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    system = await run_replay(settings_for(tmp_path, path))
    portfolio = system.pipeline.portfolios["paper"]  # type: ignore[union-attr]
    curve = list(portfolio.equity_curve)
    assert 2 < len(curve) < 2000 and portfolio.fills > 0  # the whole curve, from the start
    ts, equity, capital = curve[0]
    assert (equity, capital) == (10 * LAKH, 10 * LAKH)  # before the first fill
    _, last, last_capital = curve[-1]
    net = last - last_capital  # the net P&L as of the last point
    assert net != 0 and last - equity == net
    assert ts == min(t for t, _, _ in curve)
