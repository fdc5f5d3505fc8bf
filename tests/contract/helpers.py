"""Building blocks of the contract tests: events, spec helpers, polling until a condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from alpha_panda.domain.events import CODEC, Envelope, MarketTick, derive_id, new_envelope
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import Consumer, Log, Output, Record, TopicPartition
from alpha_panda.stream.runtime import StreamProcessor
from alpha_panda.stream.topics import KeyKind, TopicSpec

TIMEOUT = 10.0


def spec(name: str, partitions: int) -> TopicSpec:
    return TopicSpec(name, partitions, KeyKind.INSTRUMENT, 86_400_000, None)


def tick(n: int, token: int = 1, price: int = 10_000, id: str | None = None) -> Envelope[Any]:
    return new_envelope(MarketTick(instrument_token=token, last_price=price, ts=n),
                        id=id or f"tick-{token}-{n}", ts=n, source="test", key=str(token))


def tick_output(topic: str, n: int, token: int = 1, price: int = 10_000,
                id: str | None = None) -> Output:
    return to_output(Emit(topic, tick(n, token, price, id)))


def raw(topic: str, key: bytes, value: bytes, id: str | None = None) -> Output:
    return Output(topic, key, value, (("id", id.encode()),) if id else ())


async def drain(consumer: Consumer, expected: int, timeout: float = TIMEOUT) -> list[Record]:
    """Poll until ``expected`` records came (or time runs out)."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        out.extend(await consumer.poll(500, 0.2))
    return out


async def settle(consumers: Sequence[Consumer], partitions: int,
                 timeout: float = TIMEOUT) -> None:
    """Poll every member until their assignments split all ``partitions`` between them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assigned = [c.assignment() for c in consumers]
        union = frozenset().union(*assigned)
        if (len(union) == partitions and sum(len(a) for a in assigned) == partitions
                and all(assigned)):
            return
        for c in consumers:
            await c.poll(100, 0.05)
    raise AssertionError(f"group did not settle: {[sorted(c.assignment()) for c in consumers]}")


class Echo:
    """Re-emits each tick to ``out`` with a derived id; raises what ``fail`` says."""

    def __init__(self, out: str, fail: Callable[[Envelope[Any]], BaseException | None]
                 = lambda e: None) -> None:
        self.out = out
        self.fail = fail
        self.seen: list[str] = []

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        exc = self.fail(event)
        if exc is not None:
            raise exc
        self.seen.append(event.id)
        env = new_envelope(event.data, id=derive_id(event.id, "echo"), ts=event.ts,
                           source="echo", key=event.key, parent=event)
        return [Emit(self.out, env)]


async def run_until(proc: StreamProcessor, done: Callable[[], bool],
                    timeout: float = TIMEOUT) -> None:
    """Run ``proc`` until ``done()`` holds, then stop it and wait for a clean exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while not done() and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout)
    assert done(), f"condition not reached; stats={proc.stats}"


async def crash_when(proc: StreamProcessor, done: Callable[[], bool]) -> None:
    """Run ``proc`` until ``done()`` holds, then cancel it mid-flight, as a process dies:
    nothing more is committed."""
    task = asyncio.create_task(proc.run(asyncio.Event()))
    while not done() and not task.done():
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def read_all(log: Log, topic: str) -> list[Record]:
    out: list[Record] = []
    for p, end in (await log.end_offsets(topic)).items():
        offset = 0
        while offset < end:
            batch = await log.read(TopicPartition(topic, p), offset, 500)
            if not batch:
                break
            out.extend(batch)
            offset = batch[-1].offset + 1
    return out


def decode_ids(records: Sequence[Record]) -> list[str]:
    return [CODEC.decode(r.value).id for r in records]
