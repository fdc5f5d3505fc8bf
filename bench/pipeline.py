"""End-to-end benchmark of the embedded pipeline on the SQLite log.

1. Throughput: replay a generated tick file through every service (feed → strategy runner
   → risk → paper engine → portfolio) as fast as possible; ticks/s from the first tick
   published until every consumer group has committed the end of every topic.
2. Throughput with the services split between two processes on the same SQLite log, to use
   both cores: ``alpha-panda service feed strategy-runner risk-manager`` beside
   ``alpha-panda service paper-engine portfolio`` (``--split``); ticks/s from the first
   tick on the log until every consumer group has committed the end of every topic, as a
   third process sees it (``drained_beside``, looking every 5 ms). The fills must equal the one-process run's.
   Also printed: each process's CPU as a share of the run's wall time; the busier one sets
   the pace (2026-12-05, medians of 3: the feed's 87% and the other 92% over 200,000 ticks,
   76% and 93% over a million).
3. Latency: replay the same kind of file paced at a fixed rate (default 10,000 ticks/s)
   and measure tick-to-fill: from the moment a tick is durable on the log to the moment
   the fill it caused is durable and read back by a consumer of the fills topic (fills
   carry the tick's correlation id). Also printed: the same from the moment the tick was
   due by the feed's pacing, which adds the feed's own wait (its 1 ms linger among it).

Each phase runs ``--repeat`` times (default 3), each time in a fresh process, and the
median is printed with every run's figure: on this shared 2-core VM the same run varies by
±10% from one minute to the next. Also printed: the CPU time, and the event loop thread's
share of it (the pipeline is one asyncio process: that thread is the bottleneck).
`--json` prints every figure as one JSON object. `--dir` puts the log elsewhere (e.g. /dev/shm,
to see what the pipeline does without a busy disk's write stalls).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

import numpy as np
from machine import describe, loop_ns

from alpha_panda.adapters.sqlite_log.lock import lock_holders
from alpha_panda.domain.events import CODEC, OrderFilled
from alpha_panda.marketdata.files import generate_random_walk, tick_id_prefix, write_ticks
from alpha_panda.observability.logging import configure_logging
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.logs import open_log
from alpha_panda.settings import ApiSettings, Settings
from alpha_panda.stream.log import TopicPartition
from alpha_panda.stream.topics import MARKET_TICKS
from alpha_panda.testing.pipeline import drained_beside

# The two processes of the split phase (``--split``): the feed's, and the other. The
# default is the README's: the two take about the same CPU (1.5-1.9 s each for 200k
# ticks), where "feed strategy-runner portfolio | risk-manager paper-engine" left the
# feed's process the busier (1.7-2.1 s against 1.3-1.6) and measured 92,282 / 94,318 /
# 103,665 ticks/s against this one's 101,850 / 109,032 / 105,083, run by run in turn
# (2026-12-05).
SPLIT = "feed strategy-runner risk-manager | paper-engine portfolio"


def _halves(split: str) -> tuple[list[str], list[str]]:
    """``split`` as (the feed's process's services, the other's)."""
    up, down = ([x for x in half.split() if x] for half in split.split("|"))
    if "feed" not in up:
        up, down = down, up
    return up, down

STRATEGY = """\
id: bench_sma
strategy: sma_cross
instruments: {tokens}
brokers: [paper]
params: {{fast: 10, slow: 30, quantity: 1}}
execution: {{costs: true}}
"""


def prepare(root: Path, n_ticks: int, instruments: int, spacing_ns: int | None) -> Path:
    """A generated tick file (evenly spaced in event time when ``spacing_ns``) and the bench
    strategy over its instruments in ``root/strategies``."""
    cols = generate_random_walk(n_ticks, instruments, seed=1)
    if spacing_ns is not None:  # evenly spaced event time, so pacing gives a steady rate
        cols = type(cols)(**{**{f: getattr(cols, f) for f in cols.__dataclass_fields__},
                             "ts": cols.ts[0] + np.arange(n_ticks, dtype=np.int64) * spacing_ns})
    path = root / "ticks.parquet"
    write_ticks(path, cols)
    strategies = root / "strategies"
    strategies.mkdir(exist_ok=True)
    tokens = sorted(set(cols.instrument_token.tolist()))
    (strategies / "bench.yaml").write_text(STRATEGY.format(tokens=tokens))
    return path


def _settings(root: Path, path: Path) -> Settings:
    return Settings().model_copy(update={
        "data_dir": root / "data", "log": "embedded", "feed": f"replay:{path}",
        "strategies_dir": root / "strategies", "api": ApiSettings(enabled=False),
        "log_level": "WARNING",
    })


async def _throughput(n_ticks: int, instruments: int,
                      where: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        root = Path(tmp)
        path = prepare(root, n_ticks, instruments, None)
        system = SystemRun(_settings(root, path), RunOptions(exit_at_end=True, progress=False))
        cpu0, loop0 = time.process_time(), time.thread_time()
        await system.run()
        cpu = time.process_time() - cpu0  # this process only: less noisy on a shared box
        loop_cpu = time.thread_time() - loop0  # the event loop's thread: the bottleneck
        elapsed = system.stopped - system.started
        fills = system.pipeline.paper.fills if system.pipeline and system.pipeline.paper else 0
        return {"ticks": n_ticks, "fills": fills, "elapsed_s": round(elapsed, 3),
                "ticks_per_s": round(n_ticks / elapsed), "cpu_s": round(cpu, 3),
                "cpu_us_per_tick": round(cpu / n_ticks * 1e6, 2),
                "loop_cpu_us_per_tick": round(loop_cpu / n_ticks * 1e6, 2)}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user and system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _split_throughput(n_ticks: int, instruments: int, where: str | None = None,
                            split: str = SPLIT) -> dict[str, float]:
    upstream, downstream = _halves(split)
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        root = Path(tmp)
        path = prepare(root, n_ticks, instruments, None)
        settings = _settings(root, path)
        data = settings.data_dir
        cli = [sys.executable, "-m", "alpha_panda.cli", "service"]
        common = ["--data-dir", str(data), "--strategies", str(root / "strategies"),
                  "--log", "embedded"]
        env = {**os.environ, "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
        procs = [subprocess.Popen([*cli, *downstream, *common], env=env,  # noqa: ASYNC220
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
        try:
            deadline = time.monotonic() + 60
            while not any(h.service == downstream[0] for h in lock_holders(data / "log.sqlite")):
                assert procs[0].poll() is None and time.monotonic() < deadline, \
                    procs[0].communicate()[1].decode()[-2000:]
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)  # its consumers subscribed and waiting
            procs.append(subprocess.Popen(  # noqa: ASYNC220
                [*cli, *upstream, "--feed", f"replay:{path}", *common], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            # Each process's CPU every 10 ms: what it used before the first tick (its
            # start-up) is taken off.
            samples: list[tuple[float, list[float]]] = []

            async def sample() -> None:
                while True:
                    samples.append((time.time(), [_cpu_s(p.pid) for p in procs]))
                    await asyncio.sleep(0.01)

            sampler = asyncio.create_task(sample())
            try:
                done = await drained_beside(settings, n_ticks, timeout=600)
            finally:
                sampler.cancel()
            cpu_done = [_cpu_s(p.pid) for p in procs]
            for p in procs:
                assert p.poll() is None, p.communicate()[1].decode()[-2000:]
                p.send_signal(signal.SIGTERM)
            for p in procs:
                err = p.communicate(timeout=60)[1].decode()
                assert p.returncode == 0, err[-2000:]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        log = open_log("embedded", data)
        await log.start()
        try:
            parts = (await log.end_offsets(MARKET_TICKS)).keys()
            firsts = [await log.read(TopicPartition(MARKET_TICKS, p), 0, 1) for p in parts]
            started = min(r[0].timestamp_ms for r in firsts if r) / 1000  # the first append
            fills = sum((await log.end_offsets("paper.orders.filled")).values())
        finally:
            await log.close()
        elapsed = done - started
        before = next((c for t, c in reversed(samples) if t <= started), [0.0] * len(procs))
        down_cpu, up_cpu = (d - b for d, b in zip(cpu_done, before, strict=True))
        cpu = down_cpu + up_cpu
        # The busier process sets the pace: a share near 100% of the run's wall time is
        # where to cut.
        return {"ticks": n_ticks, "fills": fills, "elapsed_s": round(elapsed, 3),
                "ticks_per_s": round(n_ticks / elapsed), "cpu_s": round(cpu, 3),
                "cpu_us_per_tick": round(cpu / n_ticks * 1e6, 2),
                "feed_process_busy": round(up_cpu / elapsed, 3),
                "other_process_busy": round(down_cpu / elapsed, 3)}


async def _latency(rate: int, seconds: float, instruments: int,
                   where: str | None = None) -> dict[str, float]:
    n_ticks = int(rate * seconds)
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        root = Path(tmp)
        path = prepare(root, n_ticks, instruments, spacing_ns=1_000_000)  # 1 ms apart
        # speed: event time runs `rate / 1000` times faster than the wall clock
        system = SystemRun(_settings(root, path),
                           RunOptions(exit_at_end=True, progress=False, speed=rate / 1000))
        # Each append: its first seq, when it was durable (monotonic ns) and its ticks. One
        # entry per append, not per tick: the bench must not load the loop it measures.
        firsts: list[int] = []
        appends: list[tuple[int, list[Any]]] = []
        latencies: list[int] = []
        from_due: list[int] = []
        speed = rate / 1000
        run = asyncio.create_task(system.run())
        while system.feed is None or system.pipeline is None:
            await asyncio.sleep(0.001)
        publisher = system.feed.publisher
        original = publisher.publish
        prefix = tick_id_prefix(publisher.source)

        async def publish(ticks, first_seq):  # type: ignore[no-untyped-def]
            await original(ticks, first_seq)
            firsts.append(first_seq)
            appends.append((time.monotonic_ns(), ticks))

        publisher.publish = publish  # type: ignore[method-assign]
        # A consumer of the fills topic like any downstream service: woken by the commit
        # that makes a fill durable, not polling on a timer (which measured its own period).
        consumer = system.pipeline.log.consumer("bench.latency", ["paper.orders.filled"])

        def measure(records: list) -> None:  # type: ignore[type-arg]
            now = time.monotonic_ns()
            wall0, t0 = system.feed.paced_from  # the clock the feed paces ticks by
            for r in records:
                tick_ref = CODEC.decode_as(r.value, OrderFilled).correlation_id
                if not tick_ref.startswith(prefix):
                    continue
                seq = int(tick_ref[len(prefix):])
                i = bisect_right(firsts, seq) - 1
                durable, ticks = appends[i]
                due = int(wall0 * 1e9) + int((ticks[seq - firsts[i]].ts - t0) / speed)
                latencies.append(now - durable)
                from_due.append(now - due)

        # Until the run stops (every fill is durable by then), then what is left, before
        # the run closes the log: the stop ends a waiting poll at once.
        async def wake_on_stop() -> None:
            await system.stop.wait()
            consumer.wakeup()

        waker = asyncio.create_task(wake_on_stop())
        while not system.stop.is_set():
            measure(await consumer.poll(1000, 0.01))
        await waker
        while records := await consumer.poll(1000, 0):
            measure(records)
        await consumer.close()
        await run
        arr = np.array(latencies, dtype=np.float64) / 1e6
        due = np.array(from_due, dtype=np.float64) / 1e6
        return {"rate": rate, "ticks": n_ticks, "fills_measured": len(latencies),
                "p50_ms": _pct(arr, 50), "p99_ms": _pct(arr, 99),
                "max_ms": round(float(arr.max()), 3) if len(arr) else float("nan"),
                "due_p50_ms": _pct(due, 50), "due_p99_ms": _pct(due, 99)}


def _pct(arr: np.ndarray, q: float) -> float:
    return round(float(np.percentile(arr, q)), 3) if len(arr) else float("nan")


def main() -> None:
    configure_logging(json=False, level="WARNING")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=200_000)
    ap.add_argument("--instruments", type=int, default=20)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dir", default=None,
                    help="where the SQLite log goes (default: the system temp directory); "
                         "e.g. /dev/shm to take a busy shared disk's write stalls out")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each phase, each in a fresh process (this shared 2-core VM "
                         "varies by +-10%% from minute to minute); the median is reported")
    ap.add_argument("--split", default=SPLIT,
                    help="the split phase's two processes: services separated by | "
                         f"(default: {SPLIT!r})")
    ap.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.once:  # one run of each phase, in this process: what the parent aggregates
        print(json.dumps({
            "machine_loop_ns": round(loop_ns(), 1),  # this run's machine speed (lower: faster)
            "throughput": asyncio.run(_throughput(args.ticks, args.instruments, args.dir)),
            "split": asyncio.run(_split_throughput(args.ticks, args.instruments, args.dir,
                                                   args.split)),
            "latency": asyncio.run(_latency(args.rate, args.seconds, args.instruments,
                                            args.dir)),
        }))
        return
    runs = [_one_run(args) for _ in range(max(1, args.repeat))]
    result = {phase: {"median": _median([r[phase] for r in runs]),
                      "runs": [r[phase] for r in runs]}
              for phase in ("throughput", "split", "latency")}
    result["machine_loop_ns"] = [r["machine_loop_ns"] for r in runs]
    if args.json:
        print(json.dumps(result))
        return
    t, sp, lat = (result[x]["median"] for x in ("throughput", "split", "latency"))
    span = sorted(r["ticks_per_s"] for r in result["throughput"]["runs"])
    p99s = sorted(r["p99_ms"] for r in result["latency"]["runs"])
    print(f"throughput (median of {len(runs)}): {t['ticks']:,} ticks in {t['elapsed_s']} s = "
          f"{t['ticks_per_s']:,} ticks/s end to end (runs: {', '.join(f'{x:,}' for x in span)}; "
          f"{t['fills']:,} fills); CPU {t['cpu_s']} s = {t['cpu_us_per_tick']} us/tick, of "
          f"which the event loop's thread {t['loop_cpu_us_per_tick']} us/tick")
    spans = sorted(r["ticks_per_s"] for r in result["split"]["runs"])
    same = all(r["fills"] == o["fills"] for r, o in zip(result["split"]["runs"],
                                                       result["throughput"]["runs"], strict=True))
    print(f"throughput, services split between two processes (median of {len(runs)}; "
          f"{' | '.join(map(' '.join, _halves(args.split)))}): {sp['ticks']:,} ticks in "
          f"{sp['elapsed_s']} s = {sp['ticks_per_s']:,} ticks/s end to end (runs: "
          f"{', '.join(f'{x:,}' for x in spans)}; {sp['fills']:,} fills, "
          f"{'as in one process' if same else 'NOT AS IN ONE PROCESS'}); CPU of both "
          f"{sp['cpu_s']} s = {sp['cpu_us_per_tick']} us/tick; busy: the feed's process "
          f"{sp['feed_process_busy']:.0%}, the other {sp['other_process_busy']:.0%} of the run")
    print(f"latency at {lat['rate']:,} ticks/s (median of {len(runs)}): tick-to-fill p50 "
          f"{lat['p50_ms']} ms, p99 {lat['p99_ms']} ms (runs: {', '.join(map(str, p99s))}), "
          f"max {lat['max_ms']} ms over {lat['fills_measured']:,} fills; from the tick's due "
          f"time (the feed's own wait included): p50 {lat['due_p50_ms']} ms, p99 "
          f"{lat['due_p99_ms']} ms")
    loops = result["machine_loop_ns"]
    print(describe(statistics.median(loops),
                   f", median of {', '.join(map(str, loops))} measured before each run"))
    sys.stdout.flush()


def _one_run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    cmd = [sys.executable, __file__, "--once", "--ticks", str(args.ticks),
           "--instruments", str(args.instruments), "--rate", str(args.rate),
           "--seconds", str(args.seconds), "--split", args.split] + (
               ["--dir", args.dir] if args.dir else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the runs (figures of one run need not go together)."""
    return {k: (statistics.median(r[k] for r in runs)
                if isinstance(runs[0][k], int | float) else runs[0][k]) for k in runs[0]}

if __name__ == "__main__":
    main()
