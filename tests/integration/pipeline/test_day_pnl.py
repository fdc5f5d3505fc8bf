"""The day's P&L through the whole pipeline, over sessions: the net P&L since the last
day began, recomputed from the fills topic and the tick file; the same after a restart
(the projector rebuilt from the log)."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from typer.testing import CliRunner

from alpha_panda.cli.main import app
from alpha_panda.domain.clock import ist_date, ist_ns
from alpha_panda.domain.events import OrderFilled
from alpha_panda.marketdata.files import load_ticks
from alpha_panda.portfolio import PositionLedger
from alpha_panda.services.readmodel import days_of, portfolio_documents
from alpha_panda.testing.pipeline import logged, run_replay, settings_for, write_strategy


def net_pnl(fills: list[OrderFilled], last: dict[int, int], strategy: str | None) -> int:
    ledger = PositionLedger(0)
    for f in fills:
        ledger.apply_fill(f)
    for token, price in last.items():
        ledger.mark(token, price)
    s = ledger.snapshot(strategy)
    return s.realized + s.unrealized - s.charges


async def test_the_day_pnl_is_the_net_pnl_since_the_last_day_began_and_survives_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    done = CliRunner().invoke(app, ["ticks", "generate", str(path), "--ticks", "9000",
                                    "--instruments", "3", "--days", "3", "--seed", "5"])
    assert done.exit_code == 0, done.output
    cols = load_ticks(path)
    assert "close" in cols.extras and "close" not in cols.nulls  # on every tick, as Kite's
    tokens = sorted(set(cols.instrument_token.tolist()))
    write_strategy(tmp_path / "strategies", id="a", tokens=tokens[:2])
    write_strategy(tmp_path / "strategies", id="b", tokens=tokens[1:], quantity=3)
    settings = settings_for(tmp_path, path)
    first = await run_replay(settings)

    fills = await logged(settings.data_dir, "paper.orders.filled", OrderFilled)
    last_day = ist_date(int(cols.ts[-1]))
    day_lo = ist_ns(last_day, time(0, 0))
    last: dict[int, int] = {}
    before: dict[int, int] = {}
    for token, price, ts in zip(cols.instrument_token.tolist(), cols.last_price.tolist(),
                                cols.ts.tolist(), strict=True):
        last[token] = price
        if ts < day_lo:
            before[token] = price
    earlier = [f for f in fills if f.ts < day_lo]
    assert earlier and len(earlier) < len(fills), "trades on the last day and before it"
    expected = {scope: net_pnl(fills, last, scope) - net_pnl(earlier, before, scope)
                for scope in (None, "a", "b")}
    assert expected[None] != net_pnl(fills, last, None)  # earlier days made or lost something

    h = first.pipeline.portfolios["paper"]
    assert {scope: h.day_pnl(scope) for scope in expected} == expected
    assert ist_date(h.day.day_lo) == last_day
    # the positions' figures add up to the account's, in the read model too
    assert sum(h.day.position_pnl(p) for p in h.ledger.positions()) == expected[None]
    docs = portfolio_documents(h)
    assert b'"day":"%s"' % last_day.isoformat().encode() in docs["paper:portfolio"]
    # P&L by day: each session's, the last the day's P&L, adding up to the run's (the
    # ticks' closes are the previous sessions' last prices); each day's for each strategy
    days = days_of(h)
    assert [d.day for d in days] == sorted({ist_date(int(t)).isoformat() for t in cols.ts})
    assert days[-1].pnl == expected[None]
    assert {s: days[-1].strategies.get(s) for s in ("a", "b")} == {
        s: expected[s] for s in ("a", "b")}
    assert sum(d.pnl for d in days) == net_pnl(fills, last, None)
    assert all(d.pnl == sum(d.strategies.values()) for d in days)

    second = await run_replay(settings)
    assert second.feed.publisher.published == 0
    rebuilt = second.pipeline.portfolios["paper"]
    assert {scope: rebuilt.day_pnl(scope) for scope in expected} == expected
    assert days_of(rebuilt) == days
