"""The JSON summary of a run (``run --json``), the same shape as ``backtest --json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alpha_panda.domain.values import to_rupees

if TYPE_CHECKING:
    from alpha_panda.services.app import SystemRun


def run_summary(system: SystemRun) -> dict[str, Any]:
    p = system.pipeline
    feed = system.feed
    ticks = feed.publisher.published if feed is not None else 0
    total = getattr(feed, "total", ticks) or ticks
    elapsed = max(system.stopped - system.started, 1e-9)
    out: dict[str, Any] = {"ticks": total, "ticks_published": ticks}
    handler = p.portfolios.get("paper") if p else None
    if handler is not None:
        snap = handler.snapshot(None)
        positions = handler.ledger.positions()
        out.update(
            fills=snap.fills,
            round_trips=sum(min(pos.bought, pos.sold) and _trips(pos) for pos in positions),
            realized_pnl=str(to_rupees(snap.realized)),
            unrealized_pnl=str(to_rupees(snap.unrealized)),
            charges=str(to_rupees(snap.charges)),
        )
    out.update(load_s=round(getattr(feed, "load_s", 0.0), 6), elapsed_s=round(elapsed, 6),
               ticks_per_s=round(ticks / elapsed, 1))
    return out


def _trips(pos: Any) -> int:
    return 0
