"""A thin async bridge over librdkafka's blocking calls.

Each client (consumer, producer, admin) gets one dedicated thread: librdkafka clients are
not safe to drive from several threads at once, and a blocking ``consume`` must never
stall the event loop. Rebalance callbacks fire *inside* ``consume`` on that thread but are
async functions of the service; ``run_coroutine`` runs them on the loop and, while it
waits, keeps serving calls the callback makes back into the same client (a commit on
revoke), so the callback can await the client without deadlocking on its own thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():  # the awaiting task was cancelled meanwhile
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


class ClientThread:
    """Runs blocking calls of one librdkafka client on one thread, in submission order."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue[_Job | None] | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the client thread; the loop stays free meanwhile."""
        loop = asyncio.get_running_loop()
        job = partial(fn, *args)
        with self._lock:
            inbox = self._inbox
            if inbox is not None:
                # The thread is parked in ``run_coroutine``: hand it the job directly.
                fut: asyncio.Future[T] = loop.create_future()
                inbox.put((job, fut, loop))
        if inbox is not None:
            return await fut
        return await loop.run_in_executor(self._executor, job)

    def run_coroutine(self, aw: Awaitable[T], loop: asyncio.AbstractEventLoop) -> T:
        """Called ON the client thread: run ``coro`` on ``loop`` and return its result,
        executing the calls it makes on this client meanwhile."""
        inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        with self._lock:
            self._inbox = inbox
        async def wrapped() -> T:
            return await aw

        done = asyncio.run_coroutine_threadsafe(wrapped(), loop)
        done.add_done_callback(lambda _: inbox.put(None))
        try:
            while (item := inbox.get()) is not None:
                self._run(item)
        finally:
            with self._lock:
                self._inbox = None
            # Jobs queued between the coroutine's end and the reset above.
            while True:
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._run(item)
        return done.result()

    @staticmethod
    def _run(item: _Job) -> None:
        job, fut, loop = item
        try:
            value = job()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, not swallowed
            loop.call_soon_threadsafe(_settle, fut, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, fut, value, None)

    def shutdown(self) -> None:
        """Stop the thread once queued calls are done (does not wait)."""
        self._executor.shutdown(wait=False)
