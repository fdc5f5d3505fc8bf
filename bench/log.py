"""Append and consume rates of the embedded log backends (200-byte messages).

    python bench/log.py [--messages 200000] [--groups 3] [--batch 1000]

For each backend: append rate (batches of ``--batch``), then the rate at which ``--groups``
consumer groups each read every message and commit (offsets + processed ids, as the
runtime does), and finally a ``StreamProcessor`` pass-through (decode, handle, emit,
commit) on the same data, once with a handler that emits nothing and once with one that
emits an envelope per record; last, the embedded topology live: appending while ``--groups``
processors keep up (reads then come from the in-memory partition tails). One line of JSON per measurement on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.domain.events import MarketTick, derive_id, new_envelope
from alpha_panda.stream.embedded import EmbeddedLog
from alpha_panda.stream.emit import Emit, record_id, to_output
from alpha_panda.stream.log import Output, Record
from alpha_panda.stream.runtime import StreamProcessor
from alpha_panda.stream.topics import KeyKind, TopicSpec


def _messages(n: int) -> list[Output]:
    outs = []
    for i in range(n):
        token = 256265 + i % 50
        env = new_envelope(MarketTick(instrument_token=token, last_price=2_000_000 + i % 977,
                                      ts=1_700_000_000_000_000_000 + i, volume=i),
                           id=f"{i:032x}", ts=i, source="bench", key=str(token))
        out = to_output(Emit("ticks", env))
        pad = max(0, 200 - len(out.value))  # a 200-byte message, like a full tick
        outs.append(Output(out.topic, out.key, out.value + b" " * pad, out.headers))
    return outs


class Sink:
    """A handler that decides nothing needs emitting (most ticks, for most services)."""

    def handle(self, event: Any, record: Record) -> Sequence[Emit]:
        return ()


class Forward:
    """A trivial handler: one output per input."""

    def handle(self, event: Any, record: Record) -> Sequence[Emit]:
        env = new_envelope(event.data, id=derive_id(event.id, "fwd"), ts=event.ts,
                           source="fwd", key=event.key, parent=event)
        return [Emit("forwarded", env)]


async def _bench(name: str, log: EmbeddedLog, n: int, groups: int, batch: int) -> None:
    await log.ensure_topics([TopicSpec("ticks", 6, KeyKind.INSTRUMENT, 0, None),
                             TopicSpec("forwarded", 6, KeyKind.INSTRUMENT, 0, None)])
    msgs = _messages(n)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        await log.append(msgs[i:i + batch])
    append_s = time.perf_counter() - t0
    print(json.dumps({"backend": name, "op": "append", "messages": n,
                      "per_s": round(n / append_s)}), flush=True)

    t0 = time.perf_counter()
    for g in range(groups):
        consumer = log.consumer(f"bench-{g}", ["ticks"])
        got = 0
        while got < n:
            recs = await consumer.poll(batch, 0.05)
            got += len(recs)
            offsets = {r.tp: r.offset + 1 for r in recs}
            ids = [i for i in map(record_id, recs) if i is not None]
            await consumer.seen(ids)
            await consumer.commit([], offsets, ids)
        await consumer.close()
    consume_s = time.perf_counter() - t0
    print(json.dumps({"backend": name, "op": "consume+commit", "groups": groups,
                      "records": n * groups, "per_s": round(n * groups / consume_s)}), flush=True)

    for label, handler in (("processor, no outputs", Sink()),
                           ("processor, one output per record", Forward())):
        proc = StreamProcessor(log, name="bench", group=f"bench-{label}", topics=["ticks"],
                               handler=handler)
        stop = asyncio.Event()
        t0 = time.perf_counter()
        task = asyncio.create_task(proc.run(stop))
        while proc.stats.processed < n and not task.done():
            await asyncio.sleep(0.005)
        proc_s = time.perf_counter() - t0
        stop.set()
        await task
        print(json.dumps({"backend": name, "op": label, "records": n,
                          "per_s": round(n / proc_s)}), flush=True)
    await log.close()


async def _live(name: str, log: EmbeddedLog, n: int, groups: int, batch: int) -> None:
    """The embedded topology: a feed appends while ``groups`` processors keep up."""
    await log.ensure_topics([TopicSpec("ticks", 6, KeyKind.INSTRUMENT, 0, None)])
    msgs = _messages(n)
    procs = [StreamProcessor(log, name=f"live-{g}", group=f"live-{g}", topics=["ticks"],
                             handler=Sink()) for g in range(groups)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p.run(stop)) for p in procs]
    await asyncio.sleep(0.1)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        await log.append(msgs[i:i + batch])
        await asyncio.sleep(0)  # a feed yields between batches
    while any(p.stats.processed < n for p in procs):
        await asyncio.sleep(0.002)
    live_s = time.perf_counter() - t0
    stop.set()
    await asyncio.gather(*tasks)
    print(json.dumps({"backend": name, "op": f"live: append + {groups} processors keeping up",
                      "messages": n, "per_s": round(n / live_s)}), flush=True)
    await log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    with tempfile.TemporaryDirectory(prefix="alpha-panda-bench-") as tmp:
        asyncio.run(_bench("memory", MemoryLog(), args.messages, args.groups, args.batch))
        asyncio.run(_bench("sqlite", SqliteLog(Path(tmp) / "log.sqlite"), args.messages,
                           args.groups, args.batch))
        asyncio.run(_live("memory", MemoryLog(), args.messages, args.groups, 500))
        asyncio.run(_live("sqlite", SqliteLog(Path(tmp) / "live.sqlite"), args.messages,
                          args.groups, 500))


if __name__ == "__main__":
    main()
