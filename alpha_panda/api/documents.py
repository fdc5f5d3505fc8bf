"""Reading the projector's documents from the cache and shaping them for the API.

The cache holds msgspec JSON documents (``readmodel.views``) in int paise; this module
decodes them strictly and converts them to the response models, money as rupee strings.
A document that is not there yet is an empty answer, not an error: a fresh system has
no fills. A document that does not decode is a bug upstream and is reported as such.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec
from fastapi import HTTPException, Request

from alpha_panda.api import schemas as s
from alpha_panda.domain.clock import IST
from alpha_panda.domain.errors import InvariantViolation
from alpha_panda.domain.values import BROKERS, Broker
from alpha_panda.marketdata.instruments import symbol_of
from alpha_panda.readmodel.cache import Cache
from alpha_panda.readmodel.views import (
    STRATEGIES_KEY,
    OrderView,
    PortfolioView,
    PositionView,
    SignalView,
    StrategyPnlView,
    StrategyView,
    key,
)

T = TypeVar("T")

_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t)
    for t in (PortfolioView, list[PositionView], list[OrderView], list[SignalView], list[StrategyView])
}


def parse_broker(broker: str) -> Broker:
    """The broker of a path parameter, or a 404 naming the valid ones."""
    try:
        return Broker(broker)
    except ValueError:
        expected = ", ".join(b.value for b in BROKERS)
        raise HTTPException(
            status_code=404, detail=f"unknown broker '{broker}': expected one of {expected}"
        ) from None


class DocumentReader:
    """Typed access to the read-model documents of a cache."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    async def _load(self, cache_key: str, kind: Any, default: T) -> T:
        return self._decode(cache_key, await self._cache.get(cache_key), kind, default)

    @staticmethod
    def _decode(cache_key: str, raw: bytes | None, kind: Any, default: T) -> T:
        if raw is None:
            return default
        try:
            value: T = _DECODERS[kind].decode(raw)
        except msgspec.DecodeError as exc:
            raise InvariantViolation(f"cache document {cache_key!r} does not decode: {exc}") from exc
        return value

    async def portfolio_and_positions(
        self, broker: Broker
    ) -> tuple[PortfolioView, list[PositionView]]:
        """Both documents of one flush, read together (one ``get_many``: one MGET on Redis,
        one read transaction on SQLite): read apart, another process's flush in between
        paired cash and equity before a fill with a market value after it."""
        names = key(broker, "portfolio"), key(broker, "positions")
        portfolio, positions = await self._cache.get_many(names)
        return (self._decode(names[0], portfolio, PortfolioView, _empty(broker)),
                self._decode(names[1], positions, list[PositionView], []))

    async def positions(self, broker: Broker) -> list[PositionView]:
        return await self._load(key(broker, "positions"), list[PositionView], [])

    async def orders(self, broker: Broker) -> list[OrderView]:
        return await self._load(key(broker, "orders"), list[OrderView], [])

    async def signals(self, broker: Broker) -> list[SignalView]:
        return await self._load(key(broker, "signals"), list[SignalView], [])

    async def strategies(self) -> list[StrategyView]:
        return await self._load(STRATEGIES_KEY, list[StrategyView], [])


def _empty(broker: Broker) -> PortfolioView:
    """The portfolio of a broker with no document yet (a fresh system)."""
    live = broker is Broker.ZERODHA  # (its cash is Kite's: unknown until read)
    return PortfolioView(
        broker=broker.value, as_of=0, cash=None if live else 0, realized=0, unrealized=0,
        charges=0, gross_exposure=0, open_positions=0, fills=0, funds_from_broker=live,
    )


def reader(request: Request) -> DocumentReader:
    """FastAPI dependency: the reader over the app's cache."""
    cache: Cache = request.app.state.cache
    return DocumentReader(cache)


def market_values(positions: list[PositionView]) -> dict[str | None, int]:
    """Net marked value (Σ quantity × last price) per strategy, and for the account (None)."""
    out: dict[str | None, int] = {None: 0}
    for p in positions:
        value = p.quantity * p.last_price
        out[None] += value
        out[p.strategy_id] = out.get(p.strategy_id, 0) + value
    return out


def portfolio_out(v: PortfolioView, positions: list[PositionView]) -> s.Portfolio:
    """The account summary; equity is cash plus the marked value of open positions."""
    r = s.rupees
    held = market_values(positions)
    # the projector's own figure wins when it writes one; else derive it, exactly as the ledger
    equity = v.equity if v.equity is not None or v.cash is None else v.cash + held[None]
    capital = v.curve_capital if len(v.curve_capital) == len(v.equity_curve) else None
    return s.Portfolio(
        broker=v.broker, as_of=v.as_of, as_of_time=s.iso_time(v.as_of),
        cash=s.rupees_or_none(v.cash), funds=funds_note(v),
        funds_time=s.iso_time(v.funds_at) if v.funds_at else None,
        realized=r(v.realized), unrealized=r(v.unrealized), charges=r(v.charges),
        net_pnl=r(v.realized + v.unrealized - v.charges), day=v.day,
        day_pnl=s.rupees_or_none(v.day_pnl), market_value=r(held[None]),
        equity=s.rupees_or_none(equity), gross_exposure=r(v.gross_exposure),
        open_positions=v.open_positions, fills=v.fills,
        strategies=[_strategy_pnl(p, held.get(p.strategy_id, 0)) for p in v.strategies],
        equity_curve=[
            s.EquityPoint(ts=ts, time=s.iso_time(ts), equity=r(eq),
                          capital=r(capital[i]) if capital else None)
            for i, (ts, eq) in enumerate(v.equity_curve)
        ],
        days=[s.DayPnl(day=d.day, pnl=r(d.pnl),
                       strategies={sid: r(p) for sid, p in sorted(d.strategies.items())})
              for d in v.days],
    )


def funds_note(v: PortfolioView) -> str:
    """Where the portfolio's cash comes from, for the dashboard's cash card."""
    if not v.funds_from_broker and v.broker != Broker.ZERODHA.value:
        return "paper money: starting cash per strategy, plus fills"
    if v.cash is None:
        return "funds: not read from Kite yet"
    if v.funds_at is None:
        return "Kite's cash, plus fills since"
    at = datetime.fromtimestamp(v.funds_at // 1_000_000_000, IST)
    return f"Kite's cash at {at:%d %b %H:%M} IST, plus fills since"


def _strategy_pnl(p: StrategyPnlView, held: int) -> s.StrategyPnl:
    r = s.rupees
    equity = p.equity if p.equity is not None or p.cash is None else p.cash + held
    return s.StrategyPnl(
        strategy_id=p.strategy_id, realized=r(p.realized), unrealized=r(p.unrealized),
        charges=r(p.charges), net_pnl=r(p.realized + p.unrealized - p.charges),
        day_pnl=s.rupees_or_none(p.day_pnl), cash=s.rupees_or_none(p.cash),
        equity=s.rupees_or_none(equity),
        gross_exposure=r(p.gross_exposure), open_positions=p.open_positions, fills=p.fills,
    )


def position_out(p: PositionView) -> s.Position:
    r = s.rupees
    return s.Position(
        strategy_id=p.strategy_id, instrument_token=p.instrument_token,
        symbol=p.tradingsymbol or symbol_of(p.instrument_token), product=p.product,
        quantity=p.quantity,
        average_price=r(p.average_price), last_price=r(p.last_price),
        market_value=r(p.quantity * p.last_price), realized=r(p.realized),
        unrealized=r(p.unrealized), charges=r(p.charges), day_pnl=s.rupees_or_none(p.day_pnl),
    )


def order_out(o: OrderView) -> s.Order:
    return s.Order(
        order_id=o.order_id, strategy_id=o.strategy_id, instrument_token=o.instrument_token,
        symbol=symbol_of(o.instrument_token), side=o.side, quantity=o.quantity,
        order_type=o.order_type, product=o.product or None, validity=o.validity or None,
        parent_order_id=o.parent_order_id, origin=o.origin, status=o.status, filled_quantity=o.filled_quantity,
        average_price=s.rupees(o.average_price), limit_price=s.rupees_or_none(o.limit_price),
        trigger_price=s.rupees_or_none(o.trigger_price), charges=s.rupees(o.charges),
        reason=o.reason, ts=o.ts, time=s.iso_time(o.ts), updated_ts=o.updated_ts,
        cancel_requested_at=o.cancel_requested_ts,
        cancel_requested_by=o.cancel_requested_by or None, cancel_refused=o.cancel_refused,
    )


def signal_out(g: SignalView) -> s.Signal:
    return s.Signal(
        signal_id=g.signal_id, strategy_id=g.strategy_id, instrument_token=g.instrument_token,
        symbol=symbol_of(g.instrument_token), side=g.side, quantity=g.quantity,
        order_type=g.order_type, status=g.status, reason_code=g.reason_code, message=g.message,
        reason=g.reason, ts=g.ts, time=s.iso_time(g.ts),
    )


def strategy_out(v: StrategyView) -> s.Strategy:
    return s.Strategy(
        id=v.id, strategy=v.strategy, instruments=v.instruments,
        symbols=[symbol_of(t) for t in v.instruments], brokers=v.brokers, params=v.params,
        status=v.status, error=v.error, signals=v.signals,
        cancels_ignored=v.cancels_ignored, exit_at=v.exit_at,
        dropped_after_exit=v.dropped_after_exit, source=v.source,
    )
