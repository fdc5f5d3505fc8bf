"""A read API over an in-process cache pre-filled with a realistic paper read model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from alpha_panda.api.app import create_app
from alpha_panda.observability.health import ComponentStatus, HealthRegistry, State
from alpha_panda.readmodel.memory import MemoryCache
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
from alpha_panda.testing.control import RecordingControl

T0 = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z in ns
enc = msgspec.json.encode


class Component:
    """A HealthCheck whose state the test sets."""

    def __init__(self, name: str, state: State = State.RUNNING, ready: bool = True) -> None:
        self.name = name
        self.state = state
        self.ready = ready

    def health(self) -> ComponentStatus:
        return ComponentStatus(name=self.name, state=self.state, ready=self.ready, processed=7)


def paper_documents() -> dict[str, bytes]:
    portfolio = PortfolioView(
        broker="paper", as_of=T0 + 3_000_000_000, cash=99_812_345_67, realized=1_234_50,
        unrealized=-56_05, charges=42_17, gross_exposure=187_654_33, open_positions=2, fills=5,
        strategies=[
            StrategyPnlView(strategy_id="sma_cross_banks", realized=1_234_50, unrealized=-56_05,
                            charges=42_17, cash=99_812_345_67, gross_exposure=187_654_33,
                            open_positions=2, fills=5),
        ],
        equity_curve=[(T0, 100_000_000_00), (T0 + 3_000_000_000, 99_765_490_67)],
    )
    positions = [
        PositionView(strategy_id="sma_cross_banks", instrument_token=408065, quantity=0,
                     average_price=0, last_price=1_881_05, realized=1_234_50, unrealized=0,
                     charges=20_00),
        PositionView(strategy_id="sma_cross_banks", instrument_token=341249, quantity=10,
                     average_price=1_720_10, last_price=1_719_55, realized=0, unrealized=-5_50,
                     charges=12_17),
        PositionView(strategy_id="sma_cross_banks", instrument_token=1270529, quantity=-50,
                     average_price=1_280_00, last_price=1_281_01, realized=0, unrealized=-50_55,
                     charges=10_00, tradingsymbol="ICICIBANK"),
    ]
    orders = [  # newest first, as the projector writes them
        OrderView(order_id="o3", strategy_id="sma_cross_banks", instrument_token=1270529,
                  side="SELL", quantity=50, order_type="LIMIT", status="SUBMITTED",
                  limit_price=1_281_05, ts=T0 + 3_000_000_000, product="MIS", validity="DAY",
                  parent_order_id="o0"),
        OrderView(order_id="o2", strategy_id="momentum", instrument_token=341249, side="BUY",
                  quantity=10, order_type="MARKET", status="FILLED", filled_quantity=10,
                  average_price=1_720_10, charges=12_17, ts=T0 + 2_000_000_000),
        OrderView(order_id="o1", strategy_id="sma_cross_banks", instrument_token=408065,
                  side="BUY", quantity=5, order_type="MARKET", status="REJECTED",
                  reason="insufficient funds", ts=T0 + 1_000_000_000),
    ]
    signals = [
        SignalView(signal_id="s2", strategy_id="sma_cross_banks", instrument_token=341249,
                   side="BUY", quantity=100, order_type="MARKET", status="REJECTED",
                   reason_code="MAX_POSITION", message="position 110 would exceed max 50",
                   reason="fast SMA crossed above slow", ts=T0 + 2_500_000_000),
        SignalView(signal_id="s1", strategy_id="sma_cross_banks", instrument_token=341249,
                   side="BUY", quantity=10, order_type="MARKET", status="VALIDATED",
                   reason="fast SMA crossed above slow", ts=T0 + 1_500_000_000),
    ]
    strategies = [
        StrategyView(id="sma_cross_banks", strategy="sma_cross", instruments=[341249, 1270529],
                     brokers=["paper"], params={"fast": 10, "slow": 30}, status="ACTIVE",
                     signals=2, source="strategies/sma.yaml"),
        StrategyView(id="broken", strategy="mine:Broken", instruments=[408065],
                     brokers=["paper", "zerodha"], params={}, status="FAILED",
                     error="ZeroDivisionError: division by zero", source="db"),
    ]
    return {
        key("paper", "portfolio"): enc(portfolio),
        key("paper", "positions"): enc(positions),
        key("paper", "orders"): enc(orders),
        key("paper", "signals"): enc(signals),
        STRATEGIES_KEY: enc(strategies),
    }


@pytest.fixture
def cache() -> MemoryCache:
    return MemoryCache()


@pytest.fixture
def registry() -> HealthRegistry:
    return HealthRegistry()


@pytest.fixture
def control() -> RecordingControl:
    return RecordingControl(set_at=T0)


@pytest.fixture
async def client(
    cache: MemoryCache, registry: HealthRegistry, control: RecordingControl
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(cache=cache, health=registry, control=control)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


@pytest.fixture
async def filled(cache: MemoryCache) -> MemoryCache:
    await cache.set_many(paper_documents())
    return cache
