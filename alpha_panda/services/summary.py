"""The JSON summary of a run (``run --json``): the same figures, computed the same way and in
the same format, as ``backtest --json`` (rupee amounts as exact decimal strings)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alpha_panda.backtest.result import rupees

if TYPE_CHECKING:
    from alpha_panda.services.app import SystemRun


def run_summary(system: SystemRun) -> dict[str, Any]:
    """Ticks, fills, round trips and P&L of the paper account, plus timings."""
    p = system.pipeline
    feed = system.feed
    published = feed.publisher.published if feed is not None else 0
    ticks = getattr(feed, "total", 0) or published
    elapsed = system.stopped - system.started
    out: dict[str, Any] = {"ticks": ticks}
    handler = p.portfolios.get("paper") if p else None
    if handler is not None:
        snap = handler.snapshot(None)
        trips = handler.round_trips
        out.update(
            fills=snap.fills,
            round_trips=trips.closed,
            realized_pnl=rupees(snap.realized),
            unrealized_pnl=rupees(snap.unrealized),
            charges=rupees(snap.charges),
            net_pnl=rupees(snap.realized + snap.unrealized - snap.charges),
            win_rate=round(trips.win_rate, 6),
            open_positions=snap.open_positions,
        )
    out.update(
        ticks_published=published,
        load_s=round(getattr(feed, "load_s", 0.0), 6),
        elapsed_s=round(elapsed, 6),
        ticks_per_s=round(published / elapsed) if elapsed > 0 else 0,
    )
    return out
