"""The terminal's progress and the strategies' signal counts are what is on the log, like
the API's figures: before and after a restart (which rebuilds the portfolio and replays
the strategies), the live view and the plain line show the signals decided, the fills and
the P&L the log holds, net is realized and unrealized less charges, and each strategy
counts the signals it made. (The strategy runner used to count again what its strategies
said while a restart replayed them: a strategy waiting for a fill the replay never gives
it signalled on every tick. And the risk manager counted only those of the current run.)"""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from alpha_panda.domain.events import OrderFilled, Signal, SignalRejected, SignalValidated
from alpha_panda.domain.values import format_rupees
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.progress import COLUMNS, progress_line, render
from alpha_panda.settings import ApiSettings
from alpha_panda.testing.pipeline import logged, write_strategy
from tests.integration.pipeline.test_kill_switch import free_port, settings


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
