"""The SQLite log's writer: one thread, one connection, jobs in order.

Every write of a ``SqliteStorage`` (appends, commits, topic creation, expiry) is a job run
on this thread, one after another in the order they were submitted. sqlite3 releases the
GIL while SQLite inserts, builds pages and writes the WAL, so that work runs on the second
core while the event loop goes on with the pipeline; the loop only waits for its own job.

A job's completion is handed back to the event loop with ``call_soon_threadsafe``, in job
order: the storage applies each result (tail cache, end offsets) there before anyone
awaiting it resumes, so what consumers see grows in commit order, and only ever by what
is durable.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
_STOP = object()


class Writer:
    """Runs jobs ``fn(connection)`` on a thread of its own, first in, first out."""

    def __init__(self, path: Path, setup: Callable[[sqlite3.Connection], None]) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   cached_statements=64)
        setup(self._db)
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"sqlite-writer:{path.name}",
                                        daemon=True)
        self._closed = False
        self._pending = 0  # jobs of ``run`` not yet settled (event loop thread only)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                break
            fn, done = item
            result, error = None, None
            try:
                result = fn(self._db)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the job
                error = exc
            try:
                done(result, error)
            except RuntimeError:
                pass  # the waiting event loop is gone (closed at exit): nobody to tell
        self._db.close()

    def submit(self, fn: Job[T], on_done: Callable[[T | None, BaseException | None], None]
               ) -> None:
        """Queue ``fn``; ``on_done(result, error)`` runs on the writer thread after it."""
        if self._closed:
            raise RuntimeError("the SQLite writer is closed")
        self._jobs.put((fn, on_done))

    async def run(self, fn: Job[T], apply: Callable[[T], None] | None = None, *,
                  inline: bool = False) -> T:
        """Run ``fn`` on the writer; ``apply(result)`` runs on the event loop, in job order,
        before this returns (and not at all if ``fn`` failed).

        ``inline``: a small job, run right here on the calling thread if the writer is idle
        (nothing queued, every earlier result applied): handing it to the thread and back
        would cost more than the job (two wake-ups, and the GIL to win back twice).
        """
        if inline and self._pending == 0 and not self._closed:
            result = fn(self._db)
            if apply is not None:
                apply(result)
            return result
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending += 1

        def settle(result: T | None, exc: BaseException | None) -> None:
            self._pending -= 1
            if future.cancelled():
                if exc is None and apply is not None:
                    apply(result)  # type: ignore[arg-type]  # durable: the storage must know
                return
            if exc is not None:
                future.set_exception(exc)
                return
            if apply is not None:
                try:
                    apply(result)  # type: ignore[arg-type]
                except BaseException as err:  # noqa: BLE001 - the caller sees it
                    future.set_exception(err)
                    return
            future.set_result(result)  # type: ignore[arg-type]

        def done(result: T | None, exc: BaseException | None) -> None:
            loop.call_soon_threadsafe(settle, result, exc)

        self.submit(fn, done)
        # Shielded: a cancelled caller must not lose a result that is already durable.
        return await asyncio.shield(future)

    def call(self, fn: Job[T]) -> T:
        """Run ``fn`` on the writer and wait for it here (rare, short jobs: topic creation,
        expiry, a probe): the calling thread blocks, nothing else of the loop runs."""
        box: list[Any] = []
        ready = threading.Event()

        def done(result: T | None, exc: BaseException | None) -> None:
            box.extend((result, exc))
            ready.set()

        self.submit(fn, done)
        ready.wait()
        result, exc = box
        if exc is not None:
            raise exc
        return result  # type: ignore[no-any-return]

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs, then stop the thread and close its connection."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
