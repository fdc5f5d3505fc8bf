"""Copies the projectors' read model into the cache the API reads, on a wall-clock cadence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta

import msgspec
import structlog

from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.errors import TransientError
from alpha_panda.marketdata.instruments import symbol_of
from alpha_panda.portfolio.ledger import Position
from alpha_panda.readmodel.cache import Cache
from alpha_panda.readmodel.views import (
    STRATEGIES_KEY,
    DayPnlView,
    PortfolioView,
    PositionView,
    StrategyPnlView,
    StrategyView,
    key,
)
from alpha_panda.services.portfolio import PortfolioHandler
from alpha_panda.services.risk_manager import RiskHandler

log = structlog.get_logger(__name__)
_encode = msgspec.json.Encoder().encode
LIVE_TTL_S = 10.0  # the strategies and kill switch documents, rewritten at every flush


def portfolio_documents(h: PortfolioHandler) -> dict[str, bytes]:
    """The cache documents of one broker's read model."""
    account = h.snapshot(None)
    strategies = [h.snapshot(sid) for sid in h.ledger.strategies()]
    day = h.day
    positions = h.ledger.positions()
    portfolio = PortfolioView(
        broker=h.broker, as_of=h.as_of, cash=account.cash, realized=account.realized,
        unrealized=account.unrealized, charges=account.charges,
        gross_exposure=account.gross_exposure, open_positions=account.open_positions,
        fills=account.fills, equity_curve=[(ts, e) for ts, e, _ in h.equity_curve],
        curve_capital=[c for _, _, c in h.equity_curve], equity=account.equity,
        strategies=[StrategyPnlView(strategy_id=s.strategy_id or "", realized=s.realized,
                                    unrealized=s.unrealized, charges=s.charges, cash=s.cash,
                                    gross_exposure=s.gross_exposure,
                                    open_positions=s.open_positions, fills=s.fills,
                                    equity=s.equity, day_pnl=h.day_pnl(s.strategy_id))
                    for s in strategies],
        funds_from_broker=h.ledger.broker_funds, funds_at=h.ledger.funds_reported_at,
        day=ist_date(day.day_lo).isoformat() if day.day_hi else None,
        day_pnl=day.pnl(positions),
        days=days_of(h),
    )
    position_views = [
        PositionView(strategy_id=p.strategy_id, instrument_token=p.instrument_token,
                     quantity=p.quantity, average_price=p.average_price, last_price=p.mark_price,
                     realized=p.realized, unrealized=p.unrealized, charges=p.charges,
                     tradingsymbol=symbol_of(p.instrument_token), product=p.product.value,
                     day_pnl=day.position_pnl(p))
        # by strategy, instrument and product: in the order they were opened, a restart
        # (which reads the fills partition by partition) listed them in another order
        for p in sorted(positions, key=_position_order)
    ]
    return {
        key(h.broker, "portfolio"): _encode(portfolio),
        key(h.broker, "positions"): _encode(position_views),
        key(h.broker, "orders"): _encode(list(reversed(h.orders.values()))),
        key(h.broker, "signals"): _encode(list(reversed(h.signals))),
    }


def _position_order(p: Position) -> tuple[str, int, str]:
    return p.strategy_id, p.instrument_token, p.product.value


def days_of(h: PortfolioHandler) -> list[DayPnlView]:
    """P&L by day, oldest first (``DayHistory``)."""
    epoch = date(1970, 1, 1)
    return [DayPnlView(day=(epoch + timedelta(days=n)).isoformat(), pnl=f.get(None, 0),
                       strategies={s: v for s, v in f.items() if s is not None})
            for n, f in h.history.pnl(h.ledger.positions()).items()]


class ReadModelWriter:
    """Writes changed documents every ``interval`` seconds and once more at stop."""

    def __init__(self, cache: Cache, portfolios: Sequence[PortfolioHandler],
                 strategies: Callable[[], list[StrategyView]] | None, interval: float,
                 risk: Sequence[RiskHandler] = ()) -> None:
        self._cache = cache
        self._portfolios = portfolios
        self._risk = risk
        self._strategies = strategies
        self._interval = interval
        self._live_ttl = max(LIVE_TTL_S, 20 * interval)
        self._versions: dict[str, int] = {}
        self._warned = -float("inf")

    async def flush(self) -> None:
        # What the strategy runner and the risk manager say is written at every flush, to
        # live a few flushes only: the API of another process (a shared cache) stops
        # showing it once the process that runs them stops (the kill switch then as the
        # log has it, not as an old run last wrote it).
        live: dict[str, bytes] = {}
        if self._strategies is not None:  # only the process that runs the strategies
            live[STRATEGIES_KEY] = _encode(self._strategies())
        for r in self._risk:
            live[key(r.broker, "kill_switch")] = _encode(r.kill_switch)
        if live:
            await self._cache.set_many(live, ttl=self._live_ttl)
        # The portfolios' documents only when they changed: the last state stays.
        docs: dict[str, bytes] = {}
        versions: dict[str, int] = {}
        for h in self._portfolios:
            if self._versions.get(h.broker) != h.version:
                docs.update(portfolio_documents(h))
                versions[h.broker] = h.version
        if docs:
            await self._cache.set_many(docs)
            self._versions.update(versions)  # (once written: a failed write is tried again)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._flush_or_warn()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            except TimeoutError:
                pass
        await self._flush_or_warn()

    async def _flush_or_warn(self) -> None:
        """A flush; a cache that failed (Redis down, a shared file locked too long) is
        logged and tried again at the next flush, not the end of the read model."""
        try:
            await self.flush()
        except TransientError as exc:
            now = time.monotonic()
            if now - self._warned >= 60:  # one line a minute while it goes on failing
                self._warned = now
                log.warning("readmodel.flush_failed", error=str(exc),
                            detail="the API serves the last documents written; retrying")
