"""The pipeline as separate processes on a Kafka-protocol broker survives SIGKILL.

Each service (feed included) runs as ``alpha-panda service NAME`` against a private Tansu broker, with
processed ids in a private Redis. While a replay file streams, one service is killed with
SIGKILL and restarted. Afterwards the log must hold exactly what an undisturbed embedded
run of the same file produces: the same validated signals, one order per signal, one set
of fills per order (ids are deterministic, so "the same" means the same ids), and a
final portfolio snapshot equal both to that run's and to a recomputation from the fills.
A poison tick sent first lands in ``market.ticks.dlq`` and the stream goes on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alpha_panda.adapters.kafka import KafkaLog
from alpha_panda.domain.events import CODEC, OrderFilled, OrderSubmitted, PnlSnapshot
from alpha_panda.marketdata.files import generate_random_walk, write_ticks
from alpha_panda.services.logs import open_log
from alpha_panda.stream.log import Log, Output, Record, TopicPartition
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY, dlq_topic
from alpha_panda.testing.pipeline import write_strategy
from alpha_panda.testing.redis_server import RedisServer, redis_server
from alpha_panda.testing.tansu import TansuBroker, kafka_test_settings, tansu_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKENS = [408065, 738561, 1270529, 341249]
TICKS = 6000  # one second of event time per thousand ticks
# So the stream lasts ~6 s and the kill lands in the middle of it, even when a loaded machine
# takes seconds to start the victim (at 2.0, a 3 s stream sometimes ended before the kill).
SPEED = 1.0
VICTIMS = ["strategy-runner", "risk-manager", "paper-engine", "portfolio"]
# Consumer groups the paper pipeline runs, and the topics each reads.
GROUPS = {
    "strategy-runner": [MARKET_TICKS],
    "paper.risk-manager": [MARKET_TICKS, "paper.signals.raw"],
    "paper.trading-engine": [MARKET_TICKS, "paper.signals.validated"],
    "paper.portfolio": [MARKET_TICKS, "paper.orders.submitted", "paper.orders.filled"],
}
TOPICS = ["paper.signals.validated", "paper.orders.submitted", "paper.orders.filled",
          "paper.orders.rejected", "paper.pnl.snapshots"]


async def read_topic(log: Log, topic: str) -> list[Record]:
    out: list[Record] = []
    for p, end in (await log.end_offsets(topic)).items():
        offset = 0
        while offset < end:
            batch = await log.read(TopicPartition(topic, p), offset, 2000)
            if not batch:
                break
            out += batch
            offset = batch[-1].offset + 1
    return out


@dataclass
class Outcome:
    ids: dict[str, set[str]]
    events: dict[str, dict[str, Any]]  # topic -> id -> envelope
    duplicates: int
    last_snapshot: PnlSnapshot


async def outcome(log: Log) -> Outcome:
    ids: dict[str, set[str]] = {}
    events: dict[str, dict[str, Any]] = {}
    duplicates = 0
    snapshot: PnlSnapshot | None = None
    for t in TOPICS:
        by_id: dict[str, bytes] = {}
        events[t] = {}
        for r in await read_topic(log, t):
            env = CODEC.decode(r.value)
            if env.id in by_id:
                # A redelivered copy must be byte-identical (deterministic ids and data),
                # except a P&L snapshot: its unrealized P&L depends on which ticks the
                # portfolio had marked, and Tansu shows records of aborted transactions
                # (a real broker hides them from read_committed consumers).
                if not t.endswith("pnl.snapshots"):
                    assert by_id[env.id] == r.value, f"two different events share id {env.id}"
                duplicates += 1
            by_id[env.id] = r.value
            events[t][env.id] = env
            data = env.data
            if isinstance(data, PnlSnapshot) and data.strategy_id == "sma" and (
                    snapshot is None or data.fills >= snapshot.fills):
                snapshot = data
        ids[t] = set(by_id)
    assert snapshot is not None, "no P&L snapshot of strategy 'sma' was published"
    return Outcome(ids, events, duplicates, snapshot)


def recompute(fills: list[OrderFilled]) -> tuple[int, int, int]:
    """(realized P&L, charges, open positions) by average cost, independent of the ledger."""
    qty: dict[int, int] = defaultdict(int)
    cost: dict[int, int] = defaultdict(int)
    realized = charges = 0
    for f in sorted(fills, key=lambda f: (f.ts, f.fill_id)):
        signed = f.quantity if f.side.value == "BUY" else -f.quantity
        charges += f.charges.total
        k = f.instrument_token
        if qty[k] == 0 or (qty[k] > 0) == (signed > 0):
            qty[k] += signed
            cost[k] += signed * f.price
            continue
        closing = min(abs(signed), abs(qty[k]))
        basis = cost[k] * closing // abs(qty[k])
        realized += (1 if qty[k] > 0 else -1) * closing * f.price - basis
        cost[k] -= basis
        qty[k] += signed
        if abs(signed) > closing:
            cost[k] = (1 if signed > 0 else -1) * (abs(signed) - closing) * f.price
    return realized, charges, sum(1 for q in qty.values() if q)


def build_scenario(root: Path, write_strategies: Callable[[Path], object]) -> tuple[Path, Path, Outcome]:
    """A tick file, the strategies ``write_strategies`` puts in a directory, and the outcome
    of an undisturbed embedded run of them."""
    ticks = root / "ticks.csv"
    write_ticks(ticks, generate_random_walk(TICKS, TOKENS, seed=11))
    strategies = root / "strategies"
    write_strategies(strategies)
    ref = root / "ref.sqlite"
    subprocess.run([sys.executable, "-m", "alpha_panda.cli", "run", "--log", f"sqlite:{ref}",
                    "--feed", f"replay:{ticks}", "--strategies", str(strategies),
                    "--exit-at-end", "--no-api", "--data-dir", str(root / "data")],
                   check=True, capture_output=True, timeout=120)

    async def load() -> Outcome:
        log = open_log(f"sqlite:{ref}", root)
        await log.start()
        try:
            return await outcome(log)
        finally:
            await log.close()

    reference = asyncio.run(load())
    assert reference.ids["paper.orders.filled"], "the undisturbed embedded run filled nothing"
    return ticks, strategies, reference


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Outcome]:
    """The tick file, the strategy, and the outcome of an undisturbed embedded run."""
    return build_scenario(tmp_path_factory.mktemp("fault"),
                          lambda d: write_strategy(d, tokens=TOKENS))


class Cluster:
    """The services as child processes, each with a stable instance id (for fencing)."""

    def __init__(self, broker: TansuBroker, redis: RedisServer, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            **os.environ, "ALPHA_PANDA_DATA_DIR": str(root / "data"),
            "ALPHA_PANDA_KAFKA__SESSION_TIMEOUT_MS": "2000",
            "ALPHA_PANDA_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
            "ALPHA_PANDA_KAFKA__MAX_POLL_INTERVAL_MS": "10000",
            "ALPHA_PANDA_KAFKA__TRANSACTION_TIMEOUT_MS": "10000",
            "ALPHA_PANDA_KAFKA__DEDUP_REDIS_URL": redis.url,
            "ALPHA_PANDA_LOG_FORMAT": "json",
        }
        self.url = broker.url
        self.starts: dict[str, int] = defaultdict(int)

    def start(self, name: str, *extra: str) -> None:
        self.starts[name] += 1
        out = (self.root / f"{name}.{self.starts[name]}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "alpha_panda.cli", "service", name, "--log", self.url, *extra],
            env={**self.env, "ALPHA_PANDA_KAFKA__INSTANCE_ID": f"{name}-0"},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"services exited: {dead}; logs in {self.root}"


async def drained(log: KafkaLog, expected_ticks: int) -> bool:
    ends = await log.end_offsets(MARKET_TICKS)
    if sum(ends.values()) < expected_ticks:
        return False
    for group, topics in GROUPS.items():
        for t in topics:
            end = await log.end_offsets(t)
            done = await log.committed_offsets(group, t)
            if any(done.get(p, 0) < e for p, e in end.items()):
                return False
    return True


async def progress(log: KafkaLog) -> str:
    """What the drain waits for: the ticks on the log and each group's lag, for a failure."""
    parts = [f"ticks {sum((await log.end_offsets(MARKET_TICKS)).values())}"]
    for group, topics in GROUPS.items():
        for t in topics:
            end = await log.end_offsets(t)
            done = await log.committed_offsets(group, t)
            parts.append(f"{group} {t} lag {sum(e - done.get(p, 0) for p, e in end.items())}")
    return "; ".join(parts)


async def settled(log: KafkaLog, reference: Outcome, wait_s: float = 60) -> Outcome:
    """The outcome once every topic reads as the reference's and the last snapshot counts
    every fill, or as it is after ``wait_s``. Drained is not yet readable: a read-committed
    reader stops at the first record of an open transaction, and the killed member's is
    open until its successor (or the broker's transaction timeout) aborts it."""
    deadline = time.monotonic() + wait_s
    while True:
        got = await outcome(log)
        complete = got.last_snapshot.fills >= len(got.ids["paper.orders.filled"])
        if complete and all(got.ids[t] == reference.ids[t] for t in TOPICS[:-1]) or \
                time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


async def committed_any(log: KafkaLog, group: str) -> bool:
    for t in GROUPS[group]:
        if await log.committed_offsets(group, t):
            return True
    return False


POISON_READERS = {"strategy-runner", "paper.risk-manager", "paper.trading-engine",
                  "paper.portfolio"}
# Whose progress shows the victim is mid-stream (the feed's: the strategy runner's).
GROUP_OF = {"feed": "strategy-runner",
            "strategy-runner": "strategy-runner", "risk-manager": "paper.risk-manager",
            "paper-engine": "paper.trading-engine", "portfolio": "paper.portfolio"}


# Once again on failure (the rerun shows in the report): five processes, a broker and Redis
# on two cores, killed at a random point, failed about one CI run in ten. Two causes were
# ours, both fixed: a resumed feed skipped ticks; and a restarted portfolio's rebuild read a
# partition as empty while the paper engine had a transaction open on it (Tansu then answers
# a read-committed ListOffsets with 0), and missed the fills below its committed offset (2
# failures in 73 runs of this case with both cores otherwise busy, e.g. 791 of 826 fills;
# a passing run missed 57 orders of its read model). Others were not found. A loss or duplicate
# that is real shows as a rerun in the report, or fails twice; each failure says what it saw.
@pytest.mark.flaky(reruns=1)
@pytest.mark.parametrize("victim", [*VICTIMS, "feed"])
async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
        victim: str, tmp_path: Path, scenario: tuple[Path, Path, Outcome]) -> None:
    ticks, strategies, reference = scenario
    with tansu_broker() as broker, redis_server() as redis:
        log = KafkaLog(kafka_test_settings(broker.bootstrap))
        await log.start()
        await log.ensure_topics(REGISTRY.all())
        poison = Output(MARKET_TICKS, b"408065", b"\x00 not an envelope")
        await log.append([poison])
        poison_offset = 0
        cluster = Cluster(broker, redis, tmp_path)
        try:
            args = {name: ["--strategies", str(strategies)] for name in VICTIMS}
            args["feed"] = ["--feed", f"replay:{ticks}", "--speed", str(SPEED)]
            for name in [*VICTIMS, "feed"]:
                cluster.start(name, *args[name])
            deadline = time.monotonic() + 60
            while not await committed_any(log, GROUP_OF[victim]):
                assert time.monotonic() < deadline, "victim never made progress"
                cluster.alive()
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # let it be mid-batch
            assert not await drained(log, TICKS + 1), "stream ended before the kill"
            cluster.kill(victim)
            await asyncio.sleep(0.3)
            cluster.start(victim, *args[victim])
            # Generous: the loop ends as soon as everything is committed (15-40 s here), but
            # a slow 2-core VM that is busy with something else as well once missed 90 s.
            deadline = time.monotonic() + 180
            stable = 0
            while stable < 2:
                if time.monotonic() > deadline:
                    pytest.fail(f"pipeline did not drain after the restart: {await progress(log)}"
                                f"; logs in {tmp_path}")
                cluster.alive()
                stable = stable + 1 if await drained(log, TICKS + 1) else 0
                await asyncio.sleep(0.2)
            got = await settled(log, reference)
            letters = await read_topic(log, dlq_topic(MARKET_TICKS))
        finally:
            cluster.stop_all()
            await log.close()
    # The restarted process really took over (the partitions / the replay) of the killed one.
    restarted = (tmp_path / f"{victim}.2.log").read_text()
    assert ("feed.resume" if victim == "feed" else "kafka.assigned") in restarted

    for t in TOPICS[:-1]:
        assert got.ids[t] == reference.ids[t], f"{t} differs from the undisturbed run"
    orders = [e.data for e in got.events["paper.orders.submitted"].values()]
    per_signal = defaultdict(set)
    for o in orders:
        assert isinstance(o, OrderSubmitted)
        per_signal[o.signal_id].add(o.order_id)
    validated = {e.data.signal_id for e in got.events["paper.signals.validated"].values()}
    assert set(per_signal) == validated and all(len(v) == 1 for v in per_signal.values())
    fills = [e.data for e in got.events["paper.orders.filled"].values()]
    assert {f.order_id for f in fills} == {o.order_id for o in orders}

    snap = got.last_snapshot
    realized, charges, open_positions = recompute(fills)
    assert (snap.fills, snap.realized, snap.charges, snap.open_positions) == (
        len(fills), realized, charges, open_positions)
    # Unrealized P&L is left out: it depends on which ticks the portfolio had marked when
    # it published its last snapshot, which the interleaving of its inputs decides.
    ref = reference.last_snapshot
    assert (snap.fills, snap.realized, snap.charges, snap.cash, snap.open_positions) == (
        ref.fills, ref.realized, ref.charges, ref.cash, ref.open_positions)
    # Every service reading market.ticks gave up on the poison tick exactly once (by id).
    dead = {CODEC.decode(r.value).id: CODEC.decode(r.value).data for r in letters}
    assert {(d.topic, d.offset, d.service) for d in dead.values()} == {
        (MARKET_TICKS, poison_offset, service) for service in POISON_READERS}
