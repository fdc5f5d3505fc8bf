"""The whole pipeline on the embedded log: fills happen, the portfolio is exact, nothing leaks
from paper to zerodha, bad input is isolated."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from alpha_panda.domain.events import CODEC, OrderFilled
from alpha_panda.services.logs import open_log
from alpha_panda.stream.topics import MARKET_TICKS, dlq_topic
from alpha_panda.testing.pipeline import (
    POISON_TICK,
    append_poison_tick,
    read_all,
    run_replay,
    settings_for,
    write_strategy,
)


def recompute(fills: list[OrderFilled], last: dict[int, int]) -> dict[str, int]:
    """An independent average-cost recomputation of realized/unrealized P&L and charges."""
    qty: dict[tuple[str, int], int] = defaultdict(int)
    cost: dict[tuple[str, int], int] = defaultdict(int)  # paise, signed basis of the open qty
    realized = charges = 0
    for f in fills:
        k = (f.strategy_id, f.instrument_token)
        signed = f.quantity if f.side.value == "BUY" else -f.quantity
        charges += f.charges.total
        if qty[k] == 0 or (qty[k] > 0) == (signed > 0):
            qty[k] += signed
            cost[k] += signed * f.price
            continue
        closing = min(abs(signed), abs(qty[k]))
        basis = cost[k] * closing // abs(qty[k])  # exact for the sma round trips (same qty)
        direction = 1 if qty[k] > 0 else -1
        realized += direction * (closing * f.price) - basis
        cost[k] -= basis
        qty[k] += signed
        if abs(signed) > closing:
            cost[k] = signed // abs(signed) * (abs(signed) - closing) * f.price
    unrealized = sum(q * last[k[1]] - cost[k] for k, q in qty.items() if q)
    return {"realized": realized, "unrealized": unrealized, "charges": charges,
            "open": sum(1 for q in qty.values() if q)}


async def test_replay_fills_and_portfolio_equals_recomputation(tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(6000, 4)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    settings = settings_for(tmp_path, path)
    system = await run_replay(settings)
    handler = system.pipeline.portfolios["paper"]
    assert system.feed.publisher.published == 6000
    log = open_log(settings.log, settings.data_dir)
    await log.start()
    try:
        fills = [CODEC.decode_as(r.value, OrderFilled).data
                 for r in await read_all(log, "paper.orders.filled")]
        validated = await read_all(log, "paper.signals.validated")
        submitted = await read_all(log, "paper.orders.submitted")
    finally:
        await log.close()
    assert len(fills) > 20, "sma_cross(3, 8) on a random walk must trade"
    assert len({f.fill_id for f in fills}) == len(fills)
    # one order per validated signal, every market order filled exactly once
    assert len(submitted) == len(validated) == len(fills)
    fills.sort(key=lambda f: (f.ts, f.fill_id))
    last = {int(t): int(p) for t, p in zip(cols.instrument_token, cols.last_price, strict=True)}
    expected = recompute(fills, last)
    snap = handler.snapshot(None)
    assert (snap.realized, snap.unrealized, snap.charges) == (
        expected["realized"], expected["unrealized"], expected["charges"])
    assert snap.open_positions == expected["open"]
    assert snap.fills == len(fills)


async def test_paper_signals_never_reach_zerodha(tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(3000, 2)
    tokens = sorted(set(cols.instrument_token.tolist()))
    write_strategy(tmp_path / "strategies", id="paper_only", tokens=tokens)
    write_strategy(tmp_path / "strategies", id="shadow", tokens=tokens, brokers="[paper, zerodha]")
    settings = settings_for(tmp_path, path)
    await run_replay(settings)
    log = open_log(settings.log, settings.data_dir)
    await log.start()
    try:
        zerodha_raw = [CODEC.decode(r.value) for r in await read_all(log, "zerodha.signals.raw")]
        paper_raw = [CODEC.decode(r.value) for r in await read_all(log, "paper.signals.raw")]
        zerodha_orders = [r for s in ("submitted", "filled", "rejected", "cancelled")
                          for r in await read_all(log, f"zerodha.orders.{s}")]
    finally:
        await log.close()
    assert paper_raw and zerodha_raw
    assert {e.data.strategy_id for e in zerodha_raw} == {"shadow"}
    assert all(e.broker == "zerodha" for e in zerodha_raw)
    assert {e.data.strategy_id for e in paper_raw} == {"paper_only", "shadow"}
    # live trading is off by default: nothing is ever sent to Zerodha
    assert zerodha_orders == []


async def test_malformed_tick_goes_to_dlq_and_pipeline_goes_on(tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(3000, 2)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    (tmp_path / "strategies" / "broken.yaml").write_text("id: broken\nstrategy: sma_cross\n"
                                                          "instruments: []\n")
    settings = settings_for(tmp_path, path)
    await append_poison_tick(settings)
    system = await run_replay(settings)
    assert system.pipeline.portfolios["paper"].fills > 0
    assert [e.source for e in system.pipeline.config_errors] == [
        str(tmp_path / "strategies" / "broken.yaml")]
    log = open_log(settings.log, settings.data_dir)
    await log.start()
    try:
        dead = await read_all(log, dlq_topic(MARKET_TICKS))
    finally:
        await log.close()
    letters = [CODEC.decode(r.value).data for r in dead]
    assert letters and all(d.value == POISON_TICK for d in letters)
    assert "instrument_token" in letters[0].error
