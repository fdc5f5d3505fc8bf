"""A crash mid-stream (SIGKILL) then a restart: no fill lost, none duplicated, same result
as an uninterrupted run; and a graceful restart keeps positions and the equity curve
(rebuilt from the log)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from alpha_panda.domain.events import CODEC, Envelope, OrderFilled
from alpha_panda.readmodel.views import MAX_ORDERS
from alpha_panda.services.logs import open_log
from alpha_panda.services.readmodel import portfolio_documents
from alpha_panda.services.strategy_configs import SAMPLE_STRATEGIES
from alpha_panda.services.summary import run_summary
from alpha_panda.stream.topics import MARKET_TICKS
from alpha_panda.testing.pipeline import read_all, run_replay, settings_for, write_strategy


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "alpha_panda.cli", *args]


async def fills_of(data_dir: Path) -> list[tuple[str, int, int, str]]:
    log = open_log("embedded", data_dir)
    await log.start()
    try:
        records = await read_all(log, "paper.orders.filled")
    finally:
        await log.close()
    fills = [CODEC.decode_as(r.value, OrderFilled).data for r in records]
    return sorted((f.fill_id, f.price, f.quantity, f.side.value) for f in fills)


async def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
        tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(20_000, 4)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    clean = await run_replay(settings_for(tmp_path / "clean", path).model_copy(
        update={"strategies_dir": tmp_path / "strategies"}))
    expected = await fills_of(clean.settings.data_dir)
    assert len(expected) > 50

    data = tmp_path / "crashed"
    common = ["run", "--feed", f"replay:{path}", "--no-api", "--data-dir", str(data),
              "--strategies", str(tmp_path / "strategies")]
    env = {**os.environ, "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
    # paced replay (event time runs ~20 s; 8x speed) so the kill lands mid-stream
    proc = subprocess.Popen(cli(*common, "--speed", "8"), env=env,  # noqa: ASYNC220
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Killed once it has filled something, however long it took to start (a fixed 1.5 s
    # after its log appeared is tight on a slower machine).
    deadline = time.monotonic() + 60
    while not (data / "log.sqlite").exists() or not await fills_of(data):
        assert time.monotonic() < deadline and proc.poll() is None, "no fill from the run"
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    partial = await fills_of(data)
    assert 0 < len(partial) < len(expected), "the kill must land mid-stream"

    done = await asyncio.to_thread(subprocess.run, cli(*common, "--exit-at-end", "--json"),
                                   env=env, capture_output=True, text=True, timeout=300,
                                   check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert await fills_of(data) == expected
    assert summary["fills"] == len(expected)
    assert summary["ticks"] == 20_000


async def test_graceful_restart_keeps_positions(tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(6000, 3)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    settings = settings_for(tmp_path, path)
    first = await run_replay(settings, summary=True)
    before = first.pipeline.portfolios["paper"].snapshot(None)
    curve = list(first.pipeline.portfolios["paper"].equity_curve)
    assert len(curve) >= min(2000, first.pipeline.portfolios["paper"].fills) > 0
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(curve))
    positions_before = sorted((p.strategy_id, p.instrument_token, p.quantity, p.realized)
                              for p in first.pipeline.portfolios["paper"].ledger.positions())
    # a second run over the same file publishes nothing new: state comes from the log alone
    second = await run_replay(settings, summary=True)
    assert second.feed.publisher.published == 0
    # its summary counts the whole log's signals, as it counts its orders and fills
    counts = ("signals", "signals_rejected", "orders", "fills", "round_trips")
    one, two = run_summary(first), run_summary(second)
    assert {k: two[k] for k in counts} == {k: one[k] for k in counts} and one["signals"] > 0
    after = second.pipeline.portfolios["paper"].snapshot(None)
    assert after == before
    # the dashboard's curve too: the same points, not recomputed in the replay's order
    assert list(second.pipeline.portfolios["paper"].equity_curve) == curve
    assert sorted((p.strategy_id, p.instrument_token, p.quantity, p.realized)
                  for p in second.pipeline.portfolios["paper"].ledger.positions()) == positions_before


PARTIAL_FILLS = """\
id: partial_sma
strategy: sma_cross
instruments: [738561, 2953217]
product: MIS
params: {fast: 5, slow: 20, quantity: 40}
risk: {max_position: 80}
execution: {latency_ms: 200, volume_participation: 0.1, slippage_bps: 2}
"""


async def events_of(data_dir: Path, topics: list[str]) -> dict[str, list[Envelope]]:
    log = open_log("embedded", data_dir)
    await log.start()
    try:
        return {t: [CODEC.decode(r.value) for r in await read_all(log, t)] for t in topics}
    finally:
        await log.close()


async def test_repeated_kills_keep_every_event_exactly_once(tmp_path: Path) -> None:
    """Killed again and again at random moments (SIGKILL, or Ctrl-C then SIGKILL while it
    drains), over two sessions of the simulator's market with every sample strategy (bracket
    exits, MIS square-offs) and one with latency and partial fills: no tick, signal, order
    or fill is lost or written twice. (The result itself depends on when the strategies
    heard of their fills, which pacing changes: the invariants are what must hold.)"""
    ticks = tmp_path / "ticks.parquet"
    made = await asyncio.to_thread(subprocess.run, cli(
        "ticks", "generate", str(ticks), "--ticks", "30000", "--days", "2"),
        capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    strategies = tmp_path / "strategies"
    shutil.copytree(SAMPLE_STRATEGIES, strategies)
    (strategies / "partial_sma.yaml").write_text(PARTIAL_FILLS)
    data = tmp_path / "data"
    common = ["run", "--feed", f"replay:{ticks}", "--no-api", "--data-dir", str(data),
              "--strategies", str(strategies)]
    env = {**os.environ, "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
    rnd = random.Random(11)
    for n in range(5):
        proc = subprocess.Popen(cli(*common, "--speed", "1500"), env=env,  # noqa: ASYNC220
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(rnd.uniform(1.0, 3.0))
        if n % 2:  # Ctrl-C, and killed while it drains
            proc.send_signal(signal.SIGINT)
            await asyncio.sleep(rnd.uniform(0.02, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    published = len((await events_of(data, [MARKET_TICKS]))[MARKET_TICKS])
    assert 0 < published < 30_000, "the kills must land mid-stream"

    done = await asyncio.to_thread(subprocess.run, cli(*common, "--exit-at-end", "--json"),
                                   env=env, capture_output=True, text=True, timeout=300,
                                   check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    ev = await events_of(data, [MARKET_TICKS] + [f"paper.{t}" for t in (
        "signals.raw", "signals.validated", "signals.rejected", "orders.submitted",
        "orders.filled", "orders.rejected", "orders.cancelled")])
    for topic, events in ev.items():
        assert len({e.id for e in events}) == len(events), f"an event written twice on {topic}"
    assert len(ev[MARKET_TICKS]) == 30_000
    # every raw signal decided once, every order submitted once and filled at most in full,
    # its fills in sequence (cumulative quantities), a cancel stating what was filled
    decided = [e.data.signal_id for t in ("signals.validated", "signals.rejected")
               for e in ev[f"paper.{t}"]]
    assert sorted(decided) == sorted(e.id for e in ev["paper.signals.raw"])
    assert len(ev["paper.signals.raw"]) > 100
    ordered = {e.data.order_id: e.data.quantity for e in ev["paper.orders.submitted"]}
    assert len(ordered) == len(ev["paper.orders.submitted"])
    filled: dict[str, int] = {}
    for e in ev["paper.orders.filled"]:
        f = e.data
        filled[f.order_id] = filled.get(f.order_id, 0) + f.quantity
        assert f.cumulative_quantity == filled[f.order_id] <= ordered[f.order_id], f
    assert any(f.data.quantity < ordered[f.data.order_id] for f in ev["paper.orders.filled"]), \
        "partial fills must be among them"
    for e in ev["paper.orders.cancelled"]:
        assert e.data.filled_quantity == filled.get(e.data.order_id, 0), e.data
    summary = json.loads(done.stdout)
    assert summary["fills"] == len(ev["paper.orders.filled"])
    assert summary["ticks"] == 30_000 and summary["dead_letters"] == 0


async def test_a_restart_serves_the_read_model_it_served_before(tmp_path: Path,
                                                                tick_file) -> None:
    """Every document the API reads, after a restart, as before it: the orders too (the
    API lists them newest first), of which a full-speed replay had kept the latest read,
    not the latest by time."""
    path, cols = tick_file(6000, 3)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    settings = settings_for(tmp_path, path)

    async def documents() -> dict[str, Any]:
        run = await run_replay(settings, summary=True)
        docs = {k: json.loads(v)
                for k, v in portfolio_documents(run.pipeline.portfolios["paper"]).items()}
        docs["paper:orders"].sort(key=lambda o: o["ts"], reverse=True)  # as the API does
        return docs

    before = await documents()
    assert len(before["paper:orders"]) == MAX_ORDERS  # (more orders than it keeps)
    assert await documents() == before
