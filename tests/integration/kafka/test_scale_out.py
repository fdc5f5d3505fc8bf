"""Scale out: two processes of the strategy runner, the risk manager and the paper engine,
each pair sharing one consumer group on the broker.

Topics read together are co-partitioned (signals and orders are partitioned by their
instrument, like the ticks) and co-assigned, so each member sees whole instruments:
their ticks, signals, orders and fills. Two members per group must then produce exactly
what one embedded process produces, and both members must have done work. The portfolio
projector stays one process: it is the single writer of the read model.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from alpha_panda.adapters.kafka import KafkaLog
from alpha_panda.domain.events import OrderSubmitted
from alpha_panda.stream.topics import REGISTRY
from alpha_panda.testing.redis_server import redis_server
from alpha_panda.testing.tansu import kafka_test_settings, tansu_broker

from .test_fault_tolerance import (
    TICKS,
    TOKENS,
    VICTIMS,
    Cluster,
    Outcome,
    build_scenario,
    drained,
    outcome,
)

# Orders reach the paper book 5 ms after their signal, so they fill on a later tick of their
# instrument: the member that holds an order must also receive that instrument's ticks.
STRATEGY = f"""\
id: sma
strategy: sma_cross
instruments: {TOKENS}
params: {{fast: 3, slow: 8, quantity: 2}}
execution: {{costs: true, latency_ms: 5}}
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Outcome]:
    """The tick file, the strategy, and the outcome of one embedded process."""

    def strategies(directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "sma.yaml").write_text(STRATEGY)

    return build_scenario(tmp_path_factory.mktemp("scale"), strategies)


pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEMBERS = {"strategy-runner": (0, 1), "risk-manager": (0, 1), "paper-engine": (0, 1),
           "portfolio": (0,)}


class ScaledCluster(Cluster):
    def start_member(self, name: str, member: int, *extra: str) -> None:
        key = f"{name}#{member}"
        out = (self.root / f"{key}.log").open("wb")
        self.procs[key] = subprocess.Popen(
            [sys.executable, "-m", "alpha_panda.cli", "service", name, "--log", self.url, *extra],
            env={**self.env, "ALPHA_PANDA_KAFKA__INSTANCE_ID": f"{name}-{member}"},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def test_two_members_per_group_produce_what_one_process_does(
        tmp_path: Path, scenario: tuple[Path, Path, Outcome]) -> None:
    ticks, strategies, reference = scenario
    with tansu_broker() as broker, redis_server() as redis:
        log = KafkaLog(kafka_test_settings(broker.bootstrap))
        await log.start()
        await log.ensure_topics(REGISTRY.all())
        cluster = ScaledCluster(broker, redis, tmp_path)
        try:
            for name in VICTIMS:
                for member in MEMBERS[name]:
                    cluster.start_member(name, member, "--strategies", str(strategies))
            await asyncio.sleep(4)  # both members joined before the stream starts
            cluster.start_member("feed", 0, "--feed", f"replay:{ticks}", "--speed", "2")
            deadline = time.monotonic() + 120
            stable = 0
            while stable < 2:
                assert time.monotonic() < deadline, f"pipeline did not drain; logs in {tmp_path}"
                cluster.alive()
                stable = stable + 1 if await drained(log, TICKS) else 0
                await asyncio.sleep(0.2)
            got = await outcome(log)
        finally:
            cluster.stop_all()
            await log.close()
    for name in VICTIMS:  # really scaled: each member owned partitions
        for member in MEMBERS[name]:
            text = (tmp_path / f"{name}#{member}.log").read_text()
            assert "kafka.assigned" in text, f"{name}#{member} never got partitions"
    for t in ("paper.signals.validated", "paper.orders.submitted", "paper.orders.filled"):
        assert got.ids[t] == reference.ids[t], f"{t} differs from the one-process run"
    per_signal: dict[str, set[str]] = defaultdict(set)
    for env in got.events["paper.orders.submitted"].values():
        assert isinstance(env.data, OrderSubmitted)
        per_signal[env.data.signal_id].add(env.data.order_id)
    assert all(len(v) == 1 for v in per_signal.values())
    assert got.duplicates == 0
