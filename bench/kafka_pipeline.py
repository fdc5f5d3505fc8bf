"""End-to-end benchmark of the distributed pipeline: every service its own process on a
Kafka-protocol broker (a private Tansu, or ``KAFKA_BOOTSTRAP``).

    python bench/kafka_pipeline.py [--ticks N] [--rate R] [--seconds S] [--json]

1. Throughput: with strategy runner, risk manager, paper engine and portfolio running (one
   process each, joined and idle), a feed process replays a generated tick file as fast as
   it can; ticks/s from the first tick appended until every consumer group has committed
   the end of every topic it reads.
2. Latency: the same services, a feed paced at ``--rate`` ticks/s; tick-to-fill is the
   time from the tick's append (its record timestamp) until a separate consumer (its own
   group, read_committed) receives the fill the tick caused (same correlation id).

Every commit is a Kafka transaction (outputs + offsets), so the figures include the
exactly-once machinery. Prints the figures; ``--json`` prints one JSON object.

3. Floor (``--phase floor``, not part of ``both``): the broker's own latency for the same
   shape without any service code: four processes, each a consumer + transactional producer
   (consume -> produce -> send offsets -> commit), the first passing on one record in
   ``FLOOR_EVERY`` (about the pipeline's share of ticks that lead to a fill), fed at
   ``--rate``. What the pipeline cannot beat on that broker.

With ``KAFKA_BOOTSTRAP=host:port`` it runs against that broker instead of Tansu; the
services' consumer groups have fixed names, so give each phase an empty broker
(``--phase throughput`` / ``--phase latency``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pipeline import prepare  # bench/pipeline.py: the same file and strategy as the embedded bench

from alpha_panda.adapters.kafka import KafkaLog
from alpha_panda.domain.events import CODEC
from alpha_panda.stream.log import Record, TopicPartition
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY
from alpha_panda.testing.tansu import TansuBroker, kafka_test_settings, tansu_broker

SERVICES = ["strategy-runner", "risk-manager", "paper-engine", "portfolio"]
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK

GROUPS = {  # the paper pipeline's consumer groups and what each reads
    "strategy-runner": [MARKET_TICKS],
    "paper.strategy-feedback": ["paper.signals.rejected", "paper.orders.submitted",
                                "paper.orders.rejected", "paper.orders.filled"],
    "paper.risk-manager": [MARKET_TICKS, "paper.signals.raw", "paper.orders.filled"],
    "paper.trading-engine": [MARKET_TICKS, "paper.signals.validated"],
    "paper.portfolio": [MARKET_TICKS, "paper.orders.submitted", "paper.orders.filled"],
}
class Cluster:
    """The services as child processes; stopped with SIGTERM (graceful) at the end."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root = url, root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []
        self.env = {**os.environ, "ALPHA_PANDA_DATA_DIR": str(root / "data"),
                    "ALPHA_PANDA_LOG_FORMAT": "json", "ALPHA_PANDA_LOG_LEVEL": "INFO",
                    "ALPHA_PANDA_KAFKA__SESSION_TIMEOUT_MS": "3000",
                    "ALPHA_PANDA_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
                    "ALPHA_PANDA_KAFKA__MAX_POLL_INTERVAL_MS": "30000"}

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each running service process."""
        return {name: cpu_s(p.pid) for name, p in zip(self.names, self.procs, strict=True)
                if p.poll() is None}

    def start(self, name: str, *extra: str) -> Path:
        out = self.root / f"{name}.log"
        # BENCH_PROFILE=NAME writes a cProfile of that service to NAME.prof (cwd).
        prof = ["-m", "cProfile", "-o", f"{name}.prof"] if os.environ.get(
            "BENCH_PROFILE") == name else []
        self.names.append(name)
        self.procs.append(subprocess.Popen(
            [sys.executable, *prof, "-m", "alpha_panda.cli", "service", name, "--log", self.url,
             *extra], env={**self.env, "ALPHA_PANDA_KAFKA__INSTANCE_ID": f"{name}-0"},
            stdout=out.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        return out

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every group has its partitions (so joins are not measured)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = "".join(p.read_text() for p in self.root.glob("*.log"))
            if text.count("processor.caught_up") >= len(GROUPS):
                return
            if any(p.poll() is not None for p in self.procs):
                raise SystemExit(f"a service exited; logs in {self.root}")
            time.sleep(0.1)
        raise SystemExit(f"services not ready in {timeout}s; logs in {self.root}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


async def drained(log: KafkaLog, ticks: int) -> bool:
    """Every tick appended and every group committed to the end of what it reads."""
    ends = {MARKET_TICKS: await log.end_offsets(MARKET_TICKS)}
    if sum(ends[MARKET_TICKS].values()) < ticks:
        return False
    # One end-offsets query per topic, not per (group, topic): these checks run in a loop
    # against the broker the pipeline is using, and must not load it more than needed.
    for group, topics in GROUPS.items():
        for t in topics:
            if t not in ends:
                ends[t] = await log.end_offsets(t)
            done = await log.committed_offsets(group, t)
            if any(done.get(p, 0) < e for p, e in ends[t].items()):
                return False
    return True


async def append_times(log: KafkaLog, topic: str, by_correlation: bool = True
                       ) -> dict[str, int]:
    """Correlation id (or event id) -> when the record was appended (ms since the epoch)."""
    out: dict[str, int] = {}
    for p, end in (await log.end_offsets(topic)).items():
        offset = 0
        while offset < end:
            batch: list[Record] = await log.read(TopicPartition(topic, p), offset, 5000)
            if not batch:
                break
            for r in batch:
                env = CODEC.decode(r.value)
                out.setdefault((env.correlation_id if by_correlation else None) or env.id,
                               r.timestamp_ms)
            offset = batch[-1].offset + 1
    return out


STAGES = ["paper.signals.raw", "paper.signals.validated", "paper.orders.submitted",
          "paper.orders.filled"]


async def stage_latency(log: KafkaLog, ticks: dict[str, int]) -> dict[str, float]:
    """Median time from the tick to each stage's output being appended, in ms."""
    out: dict[str, float] = {}
    for topic in STAGES:
        times = await append_times(log, topic)
        gaps = [t - ticks[c] for c, t in times.items() if c in ticks]
        if gaps:
            out[topic] = float(np.median(gaps))
    return out


def cpu_now(cluster: Cluster, broker_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the services, the broker (ours only) and this process."""
    out = cluster.cpu()
    if broker_pid is not None:
        out["broker"] = cpu_s(broker_pid)
    out["bench"] = cpu_s(os.getpid())
    return out


async def run(url: str, bootstrap: str, n: int, instruments: int, rate: int | None,
              broker_pid: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ap-kbench-") as tmp:
        root = Path(tmp)
        path = prepare(root, n, instruments, 1_000_000 if rate else None)
        log = KafkaLog(kafka_test_settings(bootstrap))
        await log.start()
        await log.ensure_topics(REGISTRY.all())
        cluster = Cluster(url, root)
        received: dict[str, int] = {}  # fill correlation id -> wall ms it was received
        watcher = log.consumer(f"bench-{os.getpid()}-{rate}", ["paper.orders.filled"])
        try:
            for s in SERVICES:
                cluster.start(s, "--strategies", str(root / "strategies"))
            cluster.wait_ready()
            while not watcher.assignment():
                await watcher.poll(100, 0.1)
            pace = ["--speed", str(rate / 1000)] if rate else []
            cpu_start = cpu_now(cluster, broker_pid)
            cluster.start("feed", "--feed", f"replay:{path}", *pace)
            while not await drained(log, n):
                for r in await watcher.poll(5000, 0.05):
                    now = time.time_ns() // 1_000
                    received.setdefault(CODEC.decode(r.value).correlation_id or "", now)
            done_ms = time.time() * 1000
            cpu_end = cpu_now(cluster, broker_pid)
            times = await append_times(log, MARKET_TICKS, by_correlation=False)
            stages = await stage_latency(log, times) if rate else {}
        finally:
            cluster.stop()
            await log.close()
    first = min(times.values())
    lat = np.array([received[c] / 1000 - times[c] for c in received if c in times])
    out: dict[str, Any] = {"ticks": n, "fills": len(received),
                           "elapsed_s": round((done_ms - first) / 1000, 3),
                           "ticks_per_s": round(n / ((done_ms - first) / 1000)),
                           # CPU seconds each process used while the ticks flowed
                           "cpu_s": {k: round(v - cpu_start.get(k, 0.0), 2)
                                     for k, v in cpu_end.items()}}
    if rate:
        out |= {"rate": rate, "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "max_ms": round(float(lat.max()), 2), "stage_p50_ms": stages}
    return out


FLOOR_STAGES, FLOOR_PARTITIONS, FLOOR_EVERY = 4, 6, 25


def _floor_stage(bootstrap: str, i: int, wait_ms: int, ready: Any, stop: Any) -> None:
    """Stage ``i`` of the floor chain: floor.i -> floor.i+1, one transaction per poll."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka import TopicPartition as RdTopicPartition

    src, dst = f"floor.{i}", f"floor.{i + 1}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": src,
                         "isolation.level": "read_committed", "fetch.wait.max.ms": wait_ms,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 3000, "heartbeat.interval.ms": 500})
    consumer.subscribe([src])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": src})
    producer.init_transactions(10)
    while not consumer.assignment():
        consumer.poll(0.05)
    ready.set()
    while not stop.is_set():
        first = consumer.poll(0.05)
        if first is None or first.error():
            continue
        msgs = [m for m in [first, *consumer.consume(1000, 0)] if not m.error()]
        offsets = {m.partition() or 0: (m.offset() or 0) + 1 for m in msgs}
        out = [m for m in msgs if i > 0 or int(m.key() or b"0") % FLOOR_EVERY == 0]
        tps = [RdTopicPartition(src, p, o) for p, o in offsets.items()]
        if not out:  # as the services do: offsets alone are a plain commit
            consumer.commit(offsets=tps, asynchronous=False)
            continue
        producer.begin_transaction()
        for m in out:
            producer.produce(dst, m.value(), m.key(), m.partition() or 0)
        producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), 10)
        producer.commit_transaction(10)


def floor(bootstrap: str, rate: int, seconds: float, broker_pid: int | None) -> dict[str, Any]:
    """Tick-to-last-stage latency of the floor chain at ``rate`` records/s."""
    import multiprocessing

    from confluent_kafka import Consumer, Producer
    from confluent_kafka import TopicPartition as RdTopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(f"floor.{i}", FLOOR_PARTITIONS, 1)
                                    for i in range(FLOOR_STAGES + 1)]).values():
        fut.result()
    wait_ms = kafka_test_settings(bootstrap).fetch_wait_max_ms
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    readies = [ctx.Event() for _ in range(FLOOR_STAGES)]
    stages = [ctx.Process(target=_floor_stage, args=(bootstrap, i, wait_ms, readies[i], stop))
              for i in range(FLOOR_STAGES)]
    for proc in stages:
        proc.start()
    try:
        for ready in readies:
            if not ready.wait(60):
                raise SystemExit("floor stages not ready in 60 s")
        last = Consumer({"bootstrap.servers": bootstrap, "group.id": "floor.watch",
                         "isolation.level": "read_committed", "fetch.wait.max.ms": wait_ms})
        last.assign([RdTopicPartition(f"floor.{FLOOR_STAGES}", p, 0)
                     for p in range(FLOOR_PARTITIONS)])
        feed = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        sent: dict[int, float] = {}
        got: dict[int, float] = {}
        names = [f"stage-{i}" for i in range(FLOOR_STAGES)]

        def cpu() -> dict[str, float]:
            out = {n: cpu_s(p.pid or 0) for n, p in zip(names, stages, strict=True)}
            if broker_pid is not None:
                out["broker"] = cpu_s(broker_pid)
            return out

        def take(timeout: float) -> None:
            for m in last.consume(1000, timeout):
                if not m.error():
                    got.setdefault(int(m.key() or b"0"), time.time())

        cpu0, start, n = cpu(), time.time(), 0
        while time.time() - start < seconds:
            due, now = int((time.time() - start) * rate), time.time()
            for k in range(n, due):  # like the feed: what is due, in one flushed append
                feed.produce("floor.0", b"v" * 250, str(k).encode(), k % FLOOR_PARTITIONS)
                if k % FLOOR_EVERY == 0:
                    sent[k] = now
            n = max(n, due)
            feed.flush(10)
            take(0)
        deadline = time.time() + 10
        while len(got) < len(sent) and time.time() < deadline:
            take(0.05)
        cpu1 = cpu()
        last.close()
    finally:
        stop.set()
        for proc in stages:
            proc.join(10)
    lat = np.array([(got[k] - sent[k]) * 1000 for k in got if k in sent])
    return {"rate": rate, "records": n, "through": len(lat), "timed": len(sent),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "cpu_s": {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1}}


def _pid(broker: TansuBroker) -> int | None:
    return broker.process.pid if broker.process is not None else None


def _cpu_line(cpu: dict[str, float], elapsed: float) -> str:
    return "  CPU seconds while measuring: " + ", ".join(
        f"{k} {v:.2f}" for k, v in cpu.items()) + f" (total {sum(cpu.values()):.2f} " \
        f"in {elapsed:.2f} s wall)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=200_000)
    ap.add_argument("--instruments", type=int, default=20)
    ap.add_argument("--rate", type=int, default=5_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--phase", choices=["both", "throughput", "latency", "floor"],
                    default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result: dict[str, Any] = {}
    if args.phase in ("both", "throughput"):
        with tansu_broker() as broker:
            result["throughput"] = asyncio.run(
                run(broker.url, broker.bootstrap, args.ticks, args.instruments, None,
                    _pid(broker)))
    if args.phase in ("both", "latency"):
        with tansu_broker() as broker:
            result["latency"] = asyncio.run(run(broker.url, broker.bootstrap,
                                                int(args.rate * args.seconds),
                                                args.instruments, args.rate, _pid(broker)))
    if args.phase == "floor":
        with tansu_broker() as broker:
            result["floor"] = floor(broker.bootstrap, args.rate, args.seconds, _pid(broker))
    if args.json:
        print(json.dumps(result))
        return
    if "floor" in result:
        fl = result["floor"]
        print(f"floor at {fl['rate']:,} records/s, {FLOOR_STAGES} transactional stages, no "
              f"service code: p50 {fl['p50_ms']} ms, p99 {fl['p99_ms']} ms over "
              f"{fl['through']:,}/{fl['timed']:,} timed records")
        print(_cpu_line(fl["cpu_s"], args.seconds))
    if "throughput" in result:
        thr = result["throughput"]
        print(f"throughput: {thr['ticks']:,} ticks in {thr['elapsed_s']} s = "
              f"{thr['ticks_per_s']:,} ticks/s end to end ({thr['fills']:,} fills), "
              f"one process per service on Kafka")
        print(_cpu_line(thr["cpu_s"], thr["elapsed_s"]))
    if "latency" not in result:
        return
    lat = result["latency"]
    print(f"latency at {lat['rate']:,} ticks/s: tick-to-fill p50 {lat['p50_ms']} ms, "
          f"p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms over {lat['fills']:,} fills")
    print("  median append time after the tick, per stage: " + ", ".join(
        f"{t} {v:.0f} ms" for t, v in lat["stage_p50_ms"].items()))
    print(_cpu_line(lat["cpu_s"], lat["elapsed_s"]))


if __name__ == "__main__":
    main()
