"""The embedded log: one ``Log`` implementation over a pluggable ``Storage``.

``MemoryLog`` and ``SqliteLog`` differ only in where records, offsets and processed ids
live; consumer groups, partitioning, waiting for data and pausing are shared here. All
state is owned by the event loop thread. Appends and commits are coroutines, and what they
write becomes readable only once it is durable; every other storage call is short and
synchronous.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol
from zlib import crc32

import structlog

from alpha_panda.domain.errors import ConfigurationError, InvariantViolation
from alpha_panda.stream.groups import GroupCoordinator, Member, new_member_id
from alpha_panda.stream.log import Output, RebalanceCallback, Record, TopicPartition
from alpha_panda.stream.topics import REGISTRY, TopicSpec, partition_for

log = structlog.get_logger(__name__)
Placed = tuple[str, int, Output]  # (topic, partition, output)
_EXPIRE_EVERY_S = 30.0
_EXPIRE_STEP = 5_000
_REFRESH_EVERY_S = 0.02
# While another process's services write to the log (``service NAME...`` beside another
# ``service``), the log looks for their records this often while any poll waits: 20 ms and
# the poll's own timeout (50 ms) stalled the pipeline between the processes, 76k-94k
# ticks/s where 5 ms gives 96k-100k. This long after the last write another process made,
# back to 20 ms.
_SHARED_REFRESH_S = 0.005
_SHARED_FOR_S = 60.0


class Storage(Protocol):
    """Where an embedded log keeps its data. Every call is synchronous and short."""

    def topics(self) -> dict[str, int]: ...

    def create_topic(self, name: str, partitions: int, retention_ms: int = 0) -> None: ...

    def refresh(self) -> bool:
        """Notice records another process appended; True if there may be new ones."""
        ...

    def moved_topics(self) -> set[str]:
        """The topics another process appended to since the last call, as ``refresh`` or
        this process's own writes (which look at the file as they begin) found them."""
        ...

    def expire(self, now_ms: int, max_rows: int) -> int:
        """Delete up to ``max_rows`` records past their topic's retention; how many went."""
        ...

    async def append(self, records: Sequence[Placed], ts_ms: int) -> None:
        """Append ``records``; once this returns they are durable and readable."""
        ...

    async def commit(self, group: str, records: Sequence[Placed], ts_ms: int,
                     offsets: Mapping[TopicPartition, int], ids: Sequence[str]) -> None:
        """Append ``records``, move ``group``'s offsets and store ``ids``, atomically;
        nothing of it is visible (``read``, ``end_offset``, ``seen``) before it is durable."""
        ...

    def read(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]: ...

    def end_offset(self, tp: TopicPartition) -> int: ...

    def committed(self, group: str, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]: ...

    def seen(self, group: str, ids: Sequence[str]) -> set[str]: ...

    def close(self) -> None: ...


class EmbeddedLog:
    """A ``Log`` over a ``Storage``, with in-process consumer groups."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._topics: dict[str, int] = storage.topics()
        self._groups = GroupCoordinator(self._partitions_of)
        self._subscribers: dict[str, set[Member]] = {}
        self._consumers: set[EmbeddedConsumer] = set()
        self._closed = False
        self._next_expiry = time.monotonic() + _EXPIRE_EVERY_S
        self._next_refresh = 0.0
        self._shared_until = 0.0  # another process wrote recently: ``_SHARED_REFRESH_S``
        self._waiting = 0  # polls waiting for records
        self._watch: asyncio.TimerHandle | None = None  # the next look for them (``_look``)
        self._watch_loop: asyncio.AbstractEventLoop | None = None  # the loop it is on

    def _partitions_of(self, topic: str) -> int:
        return self._topics.get(topic, 0)

    async def start(self) -> None:
        """Nothing to do: storage is opened by the constructor."""

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            self._storage.close()
            for members in self._subscribers.values():  # a waiting poll: the clear error
                for m in members:
                    m.wake.set()

    async def ensure_topics(self, specs: Iterable[TopicSpec]) -> None:
        for spec in specs:
            self._create(spec.name, spec.partitions, spec.retention_ms)

    def _create(self, name: str, partitions: int, retention_ms: int = 0) -> None:
        if name in self._topics:
            return
        if partitions < 1:
            raise ConfigurationError(f"topic {name!r} needs at least one partition")
        self._storage.create_topic(name, partitions, retention_ms)
        self._topics[name] = partitions
        self._groups.topology_changed()

    def expire(self, max_rows: int = _EXPIRE_STEP) -> int:
        """Delete records past their topic's retention now (also done in the background)."""
        return self._storage.expire(int(time.time() * 1000), max_rows)

    def _maintain(self) -> None:
        """Expire old records now and then, in small steps so no call blocks for long.

        Runs after a write has committed: a failure here (a full disk, a lock held too
        long) is logged and tried again later, never raised. Raised, it reported the
        committed write as failed, and its retry wrote the batch's outputs a second time."""
        now = time.monotonic()
        if now < self._next_expiry:
            return
        try:
            deleted = self._storage.expire(int(time.time() * 1000), _EXPIRE_STEP)
        except Exception as exc:  # noqa: BLE001 - the write before it stands
            log.warning("embedded_log.expiry_failed", error=f"{type(exc).__name__}: {exc}",
                        retry_in_s=_EXPIRE_EVERY_S)
            self._next_expiry = now + _EXPIRE_EVERY_S
            return
        self._next_expiry = now + (0.2 if deleted >= _EXPIRE_STEP else _EXPIRE_EVERY_S)

    async def list_topics(self) -> dict[str, int]:
        return dict(self._topics)

    def _place(self, outputs: Sequence[Output]) -> list[Placed]:
        placed: list[Placed] = []
        topics = self._topics
        for out in outputs:
            n = topics.get(out.topic)
            if n is not None and out.partition is None:
                # The common case, inline: same result as ``partition_for``.
                key = out.key
                placed.append((out.topic, 0 if key is None or n == 1 else crc32(key) % n, out))
                continue
            if n is None:
                # Like Kafka's auto-create: registry topics get their declared layout.
                spec = REGISTRY.get(out.topic) if out.topic in REGISTRY else None
                n = spec.partitions if spec else 1
                self._create(out.topic, n, spec.retention_ms if spec else 0)
            p = out.partition if out.partition is not None else partition_for(out.key, n)
            if not 0 <= p < n:
                raise ConfigurationError(f"partition {p} out of range for {out.topic!r} ({n})")
            placed.append((out.topic, p, out))
        return placed

    def _wake(self, placed: Sequence[Placed]) -> None:
        for t in {t for t, _, _ in placed}:
            for m in self._subscribers.get(t, ()):
                m.wake.set()
        self._noticed(time.monotonic())  # what another process appended, seen by this write

    def _noticed(self, now: float) -> None:
        """Wake the consumers of the topics another process appended to since the last
        look (not every consumer: in a split pipeline nearly every write sees the other
        process's, and each would wake them all); while it goes on appending, the log's
        look (``_look``) comes every ``_SHARED_REFRESH_S``."""
        moved = self._storage.moved_topics()
        if not moved:
            return
        self._shared_until = now + _SHARED_FOR_S
        subscribers = self._subscribers
        for t in moved:
            for m in subscribers.get(t, ()):
                m.wake.set()

    def _refresh(self, *, now_due: bool = False) -> bool:
        """``Storage.refresh`` at most every 20 ms (5 ms while another process writes;
        ``now_due``: the watcher's look, due now): another process's appends (a DLQ
        replay, a service of its own) are noticed that fast, without a query on every empty
        poll. When there are some, the consumers of the topics they went to are woken
        (``_noticed``)."""
        now = time.monotonic()
        if now < self._next_refresh and not now_due:
            return False
        shared = now < self._shared_until
        self._next_refresh = now + (_SHARED_REFRESH_S if shared else _REFRESH_EVERY_S)
        changed = self._storage.refresh()
        # Also when nothing changed since this process's own last write: that write (an
        # expiry, a topic created) may have found another process's records first, and
        # woken nobody for them.
        self._noticed(now)
        return changed  # (a change without new records, e.g. another's expiry: look anyway)

    def _waits(self, n: int) -> None:
        """A poll starts (1) or stops (-1) waiting. While any waits, the log looks for
        other processes' records every 20 ms (5 ms while one appends), on one timer for
        all the polls: ``_refresh`` wakes those whose topics moved. (Each waiting poll
        looked by itself, every 5 ms while shared: a split pipeline's idle consumers cost
        their process CPU 200 times a second each, and a poll outside that mode waited out
        its 50 ms timeout before it looked.)"""
        self._waiting += n
        if not self._waiting or self._closed:
            return
        loop = asyncio.get_running_loop()
        # (a timer of an event loop that has ended never fires: the log used again under
        # another ``asyncio.run`` starts its own)
        if self._watch is None or self._watch_loop is not loop:
            self._watch_loop = loop
            self._watch = loop.call_later(self._every(), self._look)

    def _every(self) -> float:
        shared = time.monotonic() < self._shared_until
        return _SHARED_REFRESH_S if shared else _REFRESH_EVERY_S

    def _look(self) -> None:
        self._watch = None
        if self._closed or not self._waiting:
            return
        try:
            self._refresh(now_due=True)
        except Exception:  # a locked or failing file: the polls look again as they wake
            log.warning("embedded_log.refresh_failed", exc_info=True)
        loop = asyncio.get_running_loop()
        self._watch_loop = loop
        self._watch = loop.call_later(self._every(), self._look)

    def _check_open(self) -> None:
        if self._closed:
            # Shutdown order: stop processors and feeds first, then close the log.
            raise InvariantViolation("the log is closed")

    async def append(self, outputs: Sequence[Output]) -> None:
        self._check_open()
        if not outputs:
            return
        placed = self._place(outputs)
        await self._storage.append(placed, int(time.time() * 1000))
        self._wake(placed)
        self._maintain()

    def consumer(self, group: str, topics: Sequence[str], *, member_id: str | None = None,
                 on_assign: RebalanceCallback | None = None,
                 on_revoke: RebalanceCallback | None = None) -> EmbeddedConsumer:
        member = Member(member_id or new_member_id(group), frozenset(topics))
        for t in member.topics:
            self._subscribers.setdefault(t, set()).add(member)
        self._groups.join(group, member)
        consumer = EmbeddedConsumer(self, group, member, on_assign, on_revoke)
        self._consumers.add(consumer)
        return consumer

    def backlog(self, topic: str) -> int:
        """The most records any consumer of this process still has to read of one
        partition of ``topic``: producers that can wait (a replay) keep it below the
        storage's in-memory tail, so every group reads the same, already decoded records."""
        worst = 0
        end_offset = self._storage.end_offset
        for c in self._consumers:
            for tp, position in c._positions.items():
                if tp.topic == topic:
                    worst = max(worst, end_offset(tp) - position)
        return worst

    async def read(self, tp: TopicPartition, offset: int, limit: int = 500) -> list[Record]:
        self._check_open()
        if tp.topic not in self._topics:
            return []
        return self._storage.read(tp, offset, limit)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        # what another process appended too (a service of its own, `kill`): the API alone
        # read the ends its process had seen, so its lags and dead-letter counts stood still
        self._refresh()
        n = self._topics.get(topic, 0)
        return {p: self._storage.end_offset(TopicPartition(topic, p)) for p in range(n)}

    async def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        tps = [TopicPartition(topic, p) for p in range(self._topics.get(topic, 0))]
        return {tp.partition: off for tp, off in self._storage.committed(group, tps).items()}

    def _leave(self, group: str, member: Member) -> None:
        for t in member.topics:
            self._subscribers.get(t, set()).discard(member)
        self._groups.leave(group, member.member_id)


class EmbeddedConsumer:
    """A group member of an ``EmbeddedLog``. Rebalances happen inside ``poll``."""

    def __init__(self, log: EmbeddedLog, group: str, member: Member,
                 on_assign: RebalanceCallback | None, on_revoke: RebalanceCallback | None) -> None:
        self._log = log
        self._group = group
        self._member = member
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._order: list[TopicPartition] | None = None  # owned partitions, sorted
        self._rotate = 0
        self._closed = False
        self._interrupted = False  # ``wakeup``: the waiting poll returns

    @property
    def group(self) -> str:
        return self._group

    @property
    def member_id(self) -> str:
        return self._member.member_id

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._member.owned)

    async def _sync(self) -> None:
        coord = self._log._groups
        revoked = coord.revocations(self._group, self._member)
        if revoked:
            if self._on_revoke is not None:
                await self._on_revoke(sorted(revoked))
            for tp in revoked:
                self._positions.pop(tp, None)
                self._paused.discard(tp)
            self._order = None
            coord.release(self._group, self._member, revoked)
        added = coord.acquire(self._group, self._member)
        if added:
            committed = self._log._storage.committed(self._group, added)
            for tp in added:
                self._positions[tp] = committed.get(tp, 0)
            self._order = None
            if self._on_assign is not None:
                await self._on_assign(sorted(added))

    def _fetch(self, max_records: int) -> list[Record]:
        storage = self._log._storage
        order = self._order
        if order is None:
            order = self._order = sorted(self._positions)  # kept until the assignment changes
        positions = self._positions
        end_offset = storage.end_offset
        ready = [tp for tp in order if positions[tp] < end_offset(tp)]
        if self._paused:
            ready = [tp for tp in ready if tp not in self._paused]
        if not ready:
            return []
        # Rotate the starting partition so a hot partition cannot starve the others.
        self._rotate = (self._rotate + 1) % len(ready)
        ready = ready[self._rotate:] + ready[:self._rotate]
        share = max(1, max_records // len(ready))
        out: list[Record] = []
        for tp in ready:
            budget = min(share, max_records - len(out))
            if budget <= 0:
                break
            recs = storage.read(tp, self._positions[tp], budget)
            if recs:
                out.extend(recs)
                self._positions[tp] = recs[-1].offset + 1
        return out

    async def poll(self, max_records: int = 500, timeout: float = 0.1) -> list[Record]:
        if self._closed:
            raise InvariantViolation(f"poll on a closed consumer of group {self._group!r}")
        self._log._check_open()
        deadline = time.monotonic() + timeout
        while True:
            self._member.wake.clear()
            await self._sync()
            records = self._fetch(max_records)
            if not records and self._log._refresh():
                records = self._fetch(max_records)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0 or self._interrupted:
                self._interrupted = False
                return records
            # The timeout sets the same event: waking takes one turn of the loop, where
            # ``wait_for`` (a task around the wait) takes two or three on every hop of a
            # tick through the pipeline.
            wake = self._member.wake
            timer = asyncio.get_running_loop().call_later(remaining, wake.set)
            self._log._waits(1)
            try:
                await wake.wait()
            finally:
                timer.cancel()
                self._log._waits(-1)
            self._log._check_open()

    async def commit(self, outputs: Sequence[Output], offsets: Mapping[TopicPartition, int],
                     processed_ids: Sequence[str] = ()) -> None:
        self._log._check_open()
        foreign = [tp for tp in offsets if tp not in self._member.owned]
        if foreign:
            raise InvariantViolation(
                f"group {self._group!r} member {self.member_id} commits partitions it does not "
                f"own: {foreign}")
        placed = self._log._place(outputs)
        await self._log._storage.commit(self._group, placed, int(time.time() * 1000), offsets,
                                        processed_ids)
        self._log._wake(placed)
        self._log._maintain()

    async def seen(self, ids: Sequence[str]) -> set[str]:
        return self._log._storage.seen(self._group, ids) if ids else set()

    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._log._storage.committed(self._group, tps)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._member.owned:
            raise InvariantViolation(f"seek on {tp} which member {self.member_id} does not own")
        self._positions[tp] = max(0, offset)

    def position(self, tp: TopicPartition) -> int:
        return self._positions.get(tp, 0)

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        """Stop returning records of ``tps`` until ``resume`` (retry backoff)."""
        self._paused.update(tps)

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        self._paused.difference_update(tps)
        self._member.wake.set()

    def wakeup(self) -> None:
        """End a ``poll`` waiting for records now (it returns what there is, maybe none)."""
        self._interrupted = True
        self._member.wake.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_revoke is not None and self._member.owned:
            await self._on_revoke(sorted(self._member.owned))
        self._log._leave(self._group, self._member)
        self._log._consumers.discard(self)
        self._member.owned.clear()
        self._positions.clear()
