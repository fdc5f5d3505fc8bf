"""Helpers of the Zerodha integration tests: signals on the log, counting, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from alpha_panda.domain.events import (
    CODEC,
    Envelope,
    Signal,
    SignalValidated,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import Log, TopicPartition
from alpha_panda.stream.runtime import ProcessorSettings
from alpha_panda.stream.topics import strategy_instrument_key

INFY = 408065
# a processor that retries and polls quickly: the tests wait on it
FAST = ProcessorSettings(poll_timeout=0.01, backoff_base=0.05, backoff_max=2.0, max_attempts=30,
                         lag_interval=0.1)


def signal_envelope(n: int, *, token: int = INFY, broker: str = "zerodha", quantity: int = 1,
                    order_type: OrderType = OrderType.MARKET, limit_price: int | None = None,
                    side: Side = Side.BUY, ts: int | None = None, strategy: str = "s1",
                    product: Product = Product.CNC) -> Emit:
    sid = f"signal-{n}"
    sig = Signal(strategy_id=strategy, instrument_token=token, side=side, quantity=quantity,
                 order_type=order_type, limit_price=limit_price, product=product)
    env = new_envelope(SignalValidated(signal=sig, signal_id=sid), id=derive_id(sid, "risk"),
                       ts=ts or time.time_ns(), source="risk", broker=broker,
                       key=strategy_instrument_key(strategy, token))
    return Emit(f"{broker}.signals.validated", env)


async def append(log: Log, *emits: Emit) -> None:
    await log.append([to_output(e) for e in emits])


async def count(log: Log, topic: str) -> int:
    return sum((await log.end_offsets(topic)).values())


async def wait_for(cond: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def run_until(trading: Any, done: Callable[[], Awaitable[bool]],
                    timeout: float = 15.0) -> None:
    """Run the engine (a processor with ``run(stop)``) until ``done`` holds, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(trading.run(stop))
    await wait_for(done, timeout)
    stop.set()
    await asyncio.wait_for(task, 10)


async def order_events(log: Log, suffix: str) -> list[Envelope[Any]]:
    """Every event on ``zerodha.orders.{suffix}``."""
    name = f"zerodha.orders.{suffix}"
    out: list[Envelope[Any]] = []
    for p in await log.end_offsets(name):
        out += [CODEC.decode(r.value) for r in await log.read(TopicPartition(name, p), 0, 10_000)]
    return out
