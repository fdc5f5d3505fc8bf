"""What a replay feed costs per tick on the SQLite log, with and without the in-memory tails.

    python bench/feed.py [--ticks 1000000] [--tails 0,10000]

A replay's ticks (20 instruments, batches of 5,000 as ``ReplayFeed`` appends them) are
encoded and appended by ``TickPublisher`` to a fresh ``SqliteLog``, with no consumer. Each
``--tails`` value (records kept per partition in memory: ``SqliteLog(tail_records=...)``,
10,000 being the default) runs in a fresh process, and prints the CPU per tick over the
first 200,000 ticks and over the whole run, split into converting rows to events,
encoding them, and the append itself (packing, the write, the records joining the tails).

What it shows: the same work costs twice as much when the records it makes live on in the
tails as when they are freed at once, and more once the tails are full (each record then
frees an old, cold one). That is why ``bench/pipeline.py --ticks 1000000`` is slower per tick
than its default 200,000, in which no tail is trimmed yet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.marketdata.files import generate_random_walk, tick_rows
from alpha_panda.services.feed import TickPublisher
from alpha_panda.stream.runtime import freeze_long_lived_objects
from alpha_panda.stream.topics import REGISTRY

BATCH = 5000  # ReplayFeed's
FIRST = 200_000  # bench/pipeline.py's default run


async def _run(n: int, tail: int) -> dict[str, object]:
    cols = generate_random_walk(n, 20, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        log = SqliteLog(Path(tmp) / "log.sqlite", tail_records=tail)
        await log.ensure_topics(REGISTRY.all())
        publisher = TickPublisher(log, "replay:bench")
        freeze_long_lived_objects()  # as a service does before its first batch
        append = log.append
        spent = {"rows": 0.0, "append": 0.0, "publish": 0.0}
        first: dict[str, float] = {}

        async def timed_append(outputs):  # type: ignore[no-untyped-def]
            t = time.thread_time()
            await append(outputs)
            spent["append"] += time.thread_time() - t

        log.append = timed_append  # type: ignore[method-assign]
        for start in range(0, n, BATCH):
            t0 = time.thread_time()
            ticks = tick_rows(cols, start, start + BATCH)
            t1 = time.thread_time()
            await publisher.publish(ticks, start)
            spent["rows"] += t1 - t0
            spent["publish"] += time.thread_time() - t1
            if start + BATCH == FIRST:
                first = dict(spent)
        await log.close()

    def per_tick(s: dict[str, float], ticks: int) -> dict[str, float]:
        return {"rows_us": round(s["rows"] / ticks * 1e6, 2),
                "encode_us": round((s["publish"] - s["append"]) / ticks * 1e6, 2),
                "append_us": round(s["append"] / ticks * 1e6, 2),
                "total_us": round((s["rows"] + s["publish"]) / ticks * 1e6, 2)}

    return {"tail_records": tail, "ticks": n,
            "first": per_tick(first, FIRST) if first else {},
            "all": per_tick(spent, n),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=1_000_000)
    ap.add_argument("--tails", default="0,10000",
                    help="records kept in memory per partition, one run each (default 0,10000)")
    ap.add_argument("--once", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.once is not None:
        print(json.dumps(asyncio.run(_run(args.ticks, args.once))))
        return
    for tail in (int(x) for x in args.tails.split(",")):
        out = subprocess.run([sys.executable, __file__, "--ticks", str(args.ticks),
                              "--once", str(tail)], check=True, capture_output=True,
                             text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        a, f = r["all"], r["first"]
        head = (f"first {FIRST:,}: {f['total_us']} us/tick; " if f else "")
        print(f"tail of {tail:,} records per partition: {head}all {r['ticks']:,}: "
              f"{a['total_us']} us/tick (rows to events {a['rows_us']}, encoding "
              f"{a['encode_us']}, append {a['append_us']}); peak RSS {r['max_rss_mb']} MB")


if __name__ == "__main__":
    main()
