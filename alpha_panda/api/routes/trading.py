"""Read routes: portfolios, positions, orders, signals and strategies, from the cache."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BeforeValidator

from alpha_panda.api import schemas as s
from alpha_panda.api.documents import (
    DocumentReader,
    order_out,
    parse_broker,
    portfolio_out,
    position_out,
    reader,
    signal_out,
    strategy_out,
)
from alpha_panda.domain.values import Broker
from alpha_panda.readmodel.views import MAX_ORDERS, MAX_SIGNALS, OPEN_STATUSES

router = APIRouter(prefix="/api/v1", tags=["read model"])

_UNKNOWN_BROKER: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown broker (expected paper or zerodha)"}
}
TOTAL_HEADER = "X-Total-Count"
"""Rows matching the filters before ``limit`` (list routes)."""
KEPT_HEADER = "X-Kept-Latest"
"""Orders and signals: how many of the latest the read model keeps; a total that reaches
it counts the latest ones only."""
_LIST: dict[int | str, dict[str, Any]] = {
    **_UNKNOWN_BROKER,
    200: {"headers": {TOTAL_HEADER: {
        "description": "rows matching the filters before limit", "schema": {"type": "integer"},
    }}},
}
_KEPT: dict[int | str, dict[str, Any]] = {
    **_UNKNOWN_BROKER,
    200: {"headers": {**_LIST[200]["headers"], KEPT_HEADER: {
        "description": "the read model keeps this many of the latest rows (never dropping an "
                       "open order): the total counts among them",
        "schema": {"type": "integer"},
    }}},
}


def _any_case(literal: Any) -> BeforeValidator:
    """Accept a ``Literal`` of upper-case names in any case. A value that matches none is
    left as sent, so the 422 echoes what the user typed (``bogus``, not ``BOGUS``)."""
    allowed = frozenset(get_args(literal))

    def normalise(value: object) -> object:
        if isinstance(value, str) and value.upper() in allowed:
            return value.upper()
        return value

    return BeforeValidator(normalise)


BrokerParam = Annotated[Broker, Depends(parse_broker)]
Reader = Annotated[DocumentReader, Depends(reader)]
StrategyFilter = Annotated[str | None, Query(description="Only this strategy's rows.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many rows, newest first.")]
OrderStatusFilter = Annotated[
    s.OrderStatusQuery | None,
    _any_case(s.OrderStatusQuery),
    Query(description="Only orders in this status (case-insensitive); OPEN: every order "
                      "that may still fill (SUBMITTED or PARTIALLY_FILLED)."),
]
SignalStatusFilter = Annotated[
    s.SignalStatus | None,
    _any_case(s.SignalStatus),
    Query(description="VALIDATED or REJECTED (case-insensitive)."),
]


@router.get("/portfolios/{broker}", response_model=s.Portfolio, responses=_UNKNOWN_BROKER)
async def get_portfolio(broker: BrokerParam, docs: Reader) -> s.Portfolio:
    """Account summary (cash, realized, unrealized, charges, equity) and the equity curve."""
    return portfolio_out(*await docs.portfolio_and_positions(broker))


@router.get("/positions/{broker}", response_model=list[s.Position], responses=_LIST)
async def get_positions(
    broker: BrokerParam,
    docs: Reader,
    response: Response,
    strategy_id: StrategyFilter = None,
    include_closed: Annotated[bool, Query(description="Also rows with quantity 0.")] = True,
) -> list[s.Position]:
    """Positions per (strategy, instrument, product); open positions first."""
    rows = [
        p for p in await docs.positions(broker)
        if (strategy_id is None or p.strategy_id == strategy_id)
        and (include_closed or p.quantity != 0)
    ]
    rows.sort(key=lambda p: (p.quantity == 0, p.strategy_id, p.instrument_token))
    response.headers[TOTAL_HEADER] = str(len(rows))
    return [position_out(p) for p in rows]


@router.get("/orders/{broker}", response_model=list[s.Order], responses=_KEPT)
async def get_orders(
    broker: BrokerParam,
    docs: Reader,
    response: Response,
    status: OrderStatusFilter = None,
    strategy_id: StrategyFilter = None,
    limit: Limit = 100,
) -> list[s.Order]:
    """Recent orders, newest first, filtered by status and strategy (total in X-Total-Count)."""
    rows = [
        o for o in await docs.orders(broker)
        if (status is None or o.status == status
            or (status == "OPEN" and o.status in OPEN_STATUSES))
        and (strategy_id is None or o.strategy_id == strategy_id)
    ]
    # the projector writes newest first; a stable sort keeps that order among equal times
    rows.sort(key=lambda o: o.ts, reverse=True)
    response.headers[TOTAL_HEADER] = str(len(rows))
    response.headers[KEPT_HEADER] = str(MAX_ORDERS)
    return [order_out(o) for o in rows[:limit]]


@router.get("/signals/{broker}", response_model=list[s.Signal], responses=_KEPT)
async def get_signals(
    broker: BrokerParam,
    docs: Reader,
    response: Response,
    status: SignalStatusFilter = None,
    strategy_id: StrategyFilter = None,
    limit: Limit = 100,
) -> list[s.Signal]:
    """Recent signals after risk: validated, or rejected with the reason code and message."""
    rows = [
        g for g in await docs.signals(broker)
        if (status is None or g.status == status)
        and (strategy_id is None or g.strategy_id == strategy_id)
    ]
    rows.sort(key=lambda g: g.ts, reverse=True)
    response.headers[TOTAL_HEADER] = str(len(rows))
    response.headers[KEPT_HEADER] = str(MAX_SIGNALS)
    return [signal_out(g) for g in rows[:limit]]


@router.get("/strategies", response_model=list[s.Strategy])
async def get_strategies(docs: Reader) -> list[s.Strategy]:
    """Every configured strategy with its status (ACTIVE, FAILED with the error, DISABLED)."""
    return [strategy_out(v) for v in await docs.strategies()]
