"""The terminal's progress and the strategies' signal counts are what is on the log, like
the API's figures: before and after a restart (which rebuilds the portfolio and replays
the strategies), the live view and the plain line show the signals decided, the fills and
the P&L the log holds, net is realized and unrealized less charges, and each strategy
counts the signals it made. (The strategy runner used to count again what its strategies
said while a restart replayed them: a strategy waiting for a fill the replay never gives
it signalled on every tick. And the risk manager counted only those of the current run.)"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from rich.console import Console

from alpha_panda.domain.events import OrderFilled, Signal, SignalRejected, SignalValidated
from alpha_panda.domain.values import format_rupees
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.progress import COLUMNS, TickRate, progress_line, render
from alpha_panda.settings import ApiSettings, SimulatorSettings
from alpha_panda.testing.pipeline import logged, write_strategy
from tests.integration.pipeline.test_kill_switch import free_port, settings, until


def replay(tmp_path: Path, path: Path, *, progress: bool = False) -> SystemRun:
    return SystemRun(settings(tmp_path, free_port()).model_copy(update={
        "feed": f"replay:{path}", "api": ApiSettings(enabled=False)}),
        RunOptions(progress=progress, exit_at_end=True))


def shown(system: SystemRun) -> tuple[dict[str, str], dict[str, str]]:
    """The paper row of the live view, and the paper figures of the plain line."""
    console = Console(record=True, width=200)
    console.print(render(system))
    text = console.export_text()
    row = next(line.split() for line in text.splitlines() if line.split()[:1] == ["paper"])
    live = dict(zip(COLUMNS, row, strict=True))
    line = progress_line(system)
    plain = dict(re.findall(r"(\w+)=(\S+)", line.split("paper:", 1)[1]))
    return live, plain


async def on_log(data_dir: Path) -> dict[str, int]:
    """Signals decided and fills, as the log holds them."""
    return {
        "validated": len(await logged(data_dir, "paper.signals.validated", SignalValidated)),
        "rejected": len(await logged(data_dir, "paper.signals.rejected", SignalRejected)),
        "fills": len(await logged(data_dir, "paper.orders.filled", OrderFilled))}


async def made(data_dir: Path) -> dict[str, int]:
    """Signals each strategy made, as the log holds them."""
    counts: dict[str, int] = {}
    for sig in await logged(data_dir, "paper.signals.raw", Signal):
        counts[sig.strategy_id] = counts.get(sig.strategy_id, 0) + 1
    return counts


def strategy_signals(system: SystemRun) -> dict[str, int]:
    assert system.pipeline is not None
    return {v.id: v.signals for v in system.pipeline.strategy_views()}


async def test_progress_shows_what_the_log_holds_before_and_after_a_restart(
        tmp_path: Path, tick_file) -> None:  # type: ignore[no-untyped-def]
    path, cols = tick_file(6_000, 4, seed=7)
    tokens = sorted(set(cols.instrument_token.tolist()))
    for sid, quantity in (("small", 1), ("big", 5)):  # "big" asks more than its limit
        yaml = write_strategy(tmp_path / "strategies", id=sid, tokens=tokens, quantity=quantity)
        yaml.write_text(yaml.read_text() + "risk: {max_order_qty: 2}\n")
    first = replay(tmp_path, path)
    await first.run()
    data = tmp_path / "data"
    counts = await on_log(data)
    assert min(counts.values()) > 10
    assert first.pipeline is not None
    snap = first.pipeline.portfolios["paper"].snapshot(None)
    expected = {
        "signals": f"{counts['validated'] + counts['rejected']:,}",
        "validated": f"{counts['validated']:,}", "rejected": f"{counts['rejected']:,}",
        "fills": f"{counts['fills']:,}", "realized": format_rupees(snap.realized),
        "charges": format_rupees(snap.charges),
        "net": format_rupees(snap.realized + snap.unrealized - snap.charges),
    }
    assert snap.charges > 0
    live, plain = shown(first)
    assert {k: live[k] for k in expected} == expected
    assert {k: plain[k] for k in expected} == expected
    per_strategy = await made(data)
    assert strategy_signals(first) == per_strategy
    assert sum(per_strategy.values()) == counts["validated"] + counts["rejected"]

    # The same file again: nothing new is published; the figures come back from the log.
    again = replay(tmp_path, path)
    await again.run()
    assert await on_log(data) == counts
    live_again, plain_again = shown(again)
    assert live_again == live
    assert plain_again == plain
    assert strategy_signals(again) == per_strategy


async def test_the_last_progress_shows_where_the_run_ended(
        tmp_path: Path, tick_file, capsys) -> None:  # type: ignore[no-untyped-def]
    """Off a terminal (stderr captured), the last line comes once every service has
    stopped, with the figures the log holds; the live view then says the run stopped."""
    path, cols = tick_file(3_000, 4, seed=8)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    system = replay(tmp_path, path, progress=True)
    await system.run()
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("progress ")]
    counts = await on_log(tmp_path / "data")
    assert counts["fills"] > 10
    assert lines[-1] == progress_line(system)
    decided = counts["validated"] + counts["rejected"]
    assert f"ticks=3000  paper: signals={decided:,} validated={counts['validated']:,} " in lines[-1]
    assert f" fills={counts['fills']:,} " in lines[-1]
    console = Console(record=True, width=200)
    console.print(render(system))
    assert "  stopped\n" in console.export_text()


async def test_the_live_rate_is_the_feeds_rate_now(tmp_path: Path) -> None:
    """The live view shows the feed's ticks a second over its last seconds beside the
    run's average (which counts the start-up too: the simulator at 200 ticks/s read 150/s
    14 s into a run); the plain line the rate since the line before; once stopped, the
    average alone."""
    write_strategy(tmp_path / "strategies", tokens=[408065])
    system = SystemRun(settings(tmp_path, free_port()).model_copy(update={
        "api": ApiSettings(enabled=False), "simulator": SimulatorSettings(rate=400, seed=5)}),
        RunOptions(progress=False))
    task = asyncio.create_task(system.run())
    try:
        await until(lambda: system.feed is not None and system.feed.publisher.published > 0)
        await asyncio.sleep(1.0)  # the start-up is behind: the average is still lower
        live, plain = TickRate(), TickRate(window_s=1.0)
        views, lines = [], []
        for _ in range(8):
            console = Console(record=True, width=200)
            console.print(render(system, live))
            views.append(console.export_text())
            lines.append(progress_line(system, plain))
            await asyncio.sleep(0.5)
    finally:
        system.stop.set()
        await task
    now = [float(m[1].replace(",", "")) for v in views
           if (m := re.search(r"\(([\d,]+)/s, [\d,]+/s average\)", v))]
    assert len(now) >= 6, views  # from its second view on (a span of a second at least)
    assert all(300 <= r <= 500 for r in now), now
    per_line = [int(m[1]) for x in lines if (m := re.search(r" ticks_per_s=(\d+) ", x))]
    assert len(per_line) >= 6, lines
    assert all(300 <= r <= 500 for r in per_line), per_line
    console = Console(record=True, width=200)
    console.print(render(system, live))
    assert re.search(r"\([\d,]+/s average\)  elapsed [\d.,]+s  stopped", console.export_text())
    assert " ticks_per_s=" not in progress_line(system, plain)


def test_tick_rate_spans_its_window() -> None:
    rate = TickRate(window_s=5.0, shortest_s=1.0)
    assert rate.note(100.0, 0) is None
    assert rate.note(100.5, 100) is None  # half a second says nothing yet
    assert rate.note(101.0, 200) == 200.0
    for i in range(2, 20):  # 200 a second, then 50 a second from 110 s on
        rate.note(100.0 + i, 200 * i if i <= 10 else 2000 + 50 * (i - 10))
    assert rate.note(120.0, 2500) == 50.0  # the last 5 s only: 250 ticks
    assert rate.note(126.0, 2500) == 0.0  # no tick since: 0, not the last rate
