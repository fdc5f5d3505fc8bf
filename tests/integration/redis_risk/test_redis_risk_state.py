"""Shared risk counters on a real, private Redis: the account limit holds across instances."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, time
from itertools import count

import pytest

from alpha_panda.adapters.redis.risk_state import RedisRiskStateStore
from alpha_panda.domain.errors import TransientError
from alpha_panda.domain.events import Signal, SignalValidated
from alpha_panda.domain.values import Side
from alpha_panda.execution.market import ist_ns
from alpha_panda.risk import (
    InMemoryRiskStateStore,
    RateWindow,
    RiskConfig,
    RiskEngine,
    RiskStateStore,
)
from alpha_panda.testing.redis_server import RedisServer, free_port, start_redis_server

pytestmark = pytest.mark.integration

T0 = ist_ns(date(2026, 11, 23), time(10, 0))
SECOND_US = 1_000_000
_prefix = count()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server: RedisServer = start_redis_server()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, redis_url: str) -> Iterator[RiskStateStore]:
    if request.param == "memory":
        yield InMemoryRiskStateStore()
        return
    s = RedisRiskStateStore(redis_url, prefix=f"t{next(_prefix)}:")
    yield s
    s.close()


def test_store_contract(store: RiskStateStore) -> None:
    per_second = RateWindow("RATE_LIMIT_SECOND", 2, SECOND_US)
    per_day = RateWindow("RATE_LIMIT_DAY", 3, 0, bucket="2026-11-23")
    windows = [per_second, per_day]
    ts = T0 // 1000
    assert store.acquire("zerodha", "a", ts, windows) is None
    assert store.acquire("zerodha", "a", ts, windows) is None  # idempotent: not counted twice
    assert store.acquire("zerodha", "b", ts + 1, windows) is None
    assert store.acquire("zerodha", "c", ts + 2, windows) == "RATE_LIMIT_SECOND"
    assert store.count("zerodha", per_second, ts + 2) == 2
    assert store.acquire("zerodha", "c", ts + SECOND_US + 1, windows) is None  # window slid
    assert store.acquire("zerodha", "d", ts + 3 * SECOND_US, windows) == "RATE_LIMIT_DAY"
    assert store.count("zerodha", per_day, ts + 3 * SECOND_US) == 3
    assert store.acquire("paper", "d", ts, windows) is None  # accounts are separate


def test_two_risk_engines_on_one_redis_never_exceed_10_orders_per_second(redis_url: str) -> None:
    prefix = f"t{next(_prefix)}:"
    engines = [
        RiskEngine(RiskConfig(), broker="zerodha", store=RedisRiskStateStore(redis_url, prefix=prefix))
        for _ in range(2)
    ]
    validated: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def run(n: int, engine: RiskEngine) -> None:
        start.wait()
        for i in range(150):
            # 3 s of event time, 50 attempts per second per instance: 100/s offered
            # instances 1 µs apart: the limiter counts event time in whole microseconds
            ts = T0 + i * 20_000_000 + n * 1000
            s = Signal(strategy_id=f"s{n}", instrument_token=738561, side=Side.BUY, quantity=1,
                       price_hint=100_00)
            if isinstance(engine.check(f"sig-{n}-{i}", s, ts), SignalValidated):
                with lock:
                    validated.append(ts)

    threads = [threading.Thread(target=run, args=(n, e)) for n, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    validated.sort()
    worst = max(sum(1 for v in validated if ts - 1_000_000_000 < v <= ts) for ts in validated)
    assert worst == 10  # the limit was reached, and never exceeded in any one-second window
    assert 20 <= len(validated) <= 30


def test_unreachable_redis_is_a_transient_error() -> None:
    store = RedisRiskStateStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(TransientError):
        store.acquire("zerodha", "x", 1, [RateWindow("RATE_LIMIT_SECOND", 1, SECOND_US)])


def test_the_kill_switch_stops_every_instance_sharing_the_store(redis_url: str) -> None:
    prefix = f"t{next(_prefix)}:"
    a, b = (RiskEngine(RiskConfig(), broker="zerodha", store=RedisRiskStateStore(redis_url, prefix=prefix))
            for _ in range(2))
    s = Signal(strategy_id="s", instrument_token=738561, side=Side.BUY, quantity=1, price_hint=100_00)
    a.set_kill_switch(True)
    rejected = b.check("k1", s, T0)
    assert not isinstance(rejected, SignalValidated) and rejected.reason_code == "KILL_SWITCH"
    b.set_kill_switch(False)
    assert isinstance(a.check("k2", s, T0), SignalValidated)
