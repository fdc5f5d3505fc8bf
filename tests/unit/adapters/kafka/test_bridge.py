"""The client-thread bridge: blocking calls off the loop, and callbacks that call back in."""

from __future__ import annotations

import asyncio
import threading

import pytest

from alpha_panda.adapters.kafka.bridge import ClientThread


async def test_calls_run_in_order_on_one_thread_off_the_loop() -> None:
    thread = ClientThread("t")
    names: list[str] = []
    order: list[int] = []

    def job(i: int) -> int:
        names.append(threading.current_thread().name)
        order.append(i)
        return i * 2

    results = await asyncio.gather(*(thread.call(job, i) for i in range(20)))
    assert results == [i * 2 for i in range(20)]
    assert order == list(range(20))
    assert len(set(names)) == 1 and names[0] != threading.current_thread().name
    thread.shutdown()


async def test_a_callback_fired_on_the_client_thread_can_call_the_client_back() -> None:
    # Like librdkafka's on_revoke: fired inside a blocking call on the client thread, it
    # runs an async callback on the loop, which awaits another call on the same client.
    thread = ClientThread("t")
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def committed() -> str:
        seen.append(threading.current_thread().name)
        return "offsets"

    async def on_revoke() -> str:
        return await thread.call(committed)

    def consume() -> str:
        inner = thread.run_coroutine(on_revoke(), loop)
        return f"consumed after revoke committed {inner}"

    result = await asyncio.wait_for(thread.call(consume), 5)
    assert result == "consumed after revoke committed offsets"
    assert len(seen) == 1
    thread.shutdown()


async def test_errors_reach_the_caller() -> None:
    thread = ClientThread("t")
    loop = asyncio.get_running_loop()

    def boom() -> None:
        raise ValueError("broker said no")

    async def callback() -> None:
        await thread.call(boom)

    with pytest.raises(ValueError, match="broker said no"):
        await thread.call(boom)
    with pytest.raises(ValueError, match="broker said no"):
        await asyncio.wait_for(thread.call(lambda: thread.run_coroutine(callback(), loop)), 5)
    thread.shutdown()
