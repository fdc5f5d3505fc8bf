"""What a backtest returns, and its JSON form.

JSON conventions: rupee amounts are exact decimal strings (``"1234.50"``: paise / 100,
never a float), counts are ints, ratios are floats rounded to 6 places (``sharpe`` is
null with fewer than two trading days: it is taken over daily returns). What each figure
means: ``alpha_panda.backtest.metrics.FIGURES``. The only fields
that differ between two runs of the same input are the timings (``load_s``,
``elapsed_s``, ``ticks_per_s``); ``to_json(timings=False)`` leaves them out and is then
byte-identical across runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alpha_panda.backtest.metrics import RoundTrip, RoundTripTracker, performance
from alpha_panda.domain.events import OrderFilled
from alpha_panda.domain.values import to_rupees
from alpha_panda.portfolio.ledger import PositionLedger
from alpha_panda.strategy.runner import StrategyStatus

TIMINGS = ("load_s", "elapsed_s", "ticks_per_s")


def rupees(paise: int) -> str:
    """Exact rupee string of an amount in paise: ``12345 -> "123.45"``."""
    return str(to_rupees(paise))


@dataclass
class BacktestResult:
    """Summary figures plus the fills, round trips and sampled equity curve."""

    summary: dict[str, Any]
    fills: list[OrderFilled] = field(default_factory=list)
    round_trips: list[RoundTrip] = field(default_factory=list)
    equity: list[tuple[int, int, int]] = field(default_factory=list)  # (ts, equity, gross)
    statuses: list[StrategyStatus] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, *, timings: bool = True) -> dict[str, Any]:
        if timings:
            return dict(self.summary)
        return {k: v for k, v in self.summary.items() if k not in TIMINGS}

    def to_json(self, *, timings: bool = True) -> str:
        """One JSON object, keys in a fixed order."""
        return json.dumps(self.to_dict(timings=timings), separators=(",", ":"))


def strategy_figures(ledger: PositionLedger, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Fills, P&L (rupees, exact strings) and open positions of each strategy of ``ids``, in
    that order: the account's figures, strategy by strategy (zeros for one that never
    filled)."""
    out: dict[str, dict[str, Any]] = {}
    for sid in ids:
        s = ledger.snapshot(sid)
        out[sid] = {
            "fills": s.fills, "realized_pnl": rupees(s.realized),
            "unrealized_pnl": rupees(s.unrealized), "charges": rupees(s.charges),
            "net_pnl": rupees(s.realized + s.unrealized - s.charges),
            "open_positions": s.open_positions,
        }
    return out


def summarize(
    *, ticks: int, elapsed_s: float, load_s: float, ledger: PositionLedger,
    fills: list[OrderFilled], trips: RoundTripTracker, samples: list[tuple[int, int, int]],
    start_ns: int, counts: dict[str, int], rejections: dict[str, int],
    rejection_messages: dict[str, str] | None = None,
    statuses: Sequence[StrategyStatus], initial_equity: int,
    stops: Sequence[dict[str, Any]] = (),
) -> BacktestResult:
    """The summary of a run; ``samples`` (ts, equity, gross exposure) end at the last tick,
    ``start_ns`` is the first tick's time."""
    snap = ledger.snapshot(None)
    end_ns = samples[-1][0] if samples else start_ns
    figures = performance(samples=samples, initial_equity=initial_equity, trips=trips,
                          start_ns=start_ns, end_ns=end_ns)
    net = snap.realized + snap.unrealized - snap.charges
    summary: dict[str, Any] = {
        "ticks": ticks,
        "fills": len(fills),
        "round_trips": trips.closed,
        "realized_pnl": rupees(snap.realized),
        "unrealized_pnl": rupees(snap.unrealized),
        "charges": rupees(snap.charges),
        "net_pnl": rupees(net),
        **figures,
        "open_positions": snap.open_positions,
        **counts,
        "rejections": dict(sorted(rejections.items())),
        "rejection_messages": dict(sorted((rejection_messages or {}).items())),
        "strategies": strategy_figures(ledger, [s.id for s in statuses]),
        "strategies_failed": sorted(s.id for s in statuses if s.state == "FAILED"),
        "daily_loss_stops": list(stops),
        "load_s": round(load_s, 6),
        "elapsed_s": round(elapsed_s, 6),
        "ticks_per_s": round(ticks / elapsed_s) if elapsed_s > 0 else 0,
    }
    positions = [{
        "strategy_id": p.strategy_id, "instrument_token": p.instrument_token,
        "product": p.product.value, "quantity": p.quantity, "average_price": rupees(p.average_price),
        "realized": rupees(p.realized), "unrealized": rupees(p.unrealized),
        "charges": rupees(p.charges), "fills": p.fills,
    } for p in ledger.positions()]
    return BacktestResult(summary=summary, fills=fills, round_trips=trips.trips, equity=samples,
                          statuses=list(statuses), positions=positions)
