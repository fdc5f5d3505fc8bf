"""The log port: what every service needs from a partitioned, append-only log.

Backends (``adapters/memory_log``, ``adapters/sqlite_log``, ``adapters/kafka``) implement
these protocols and pass one contract test suite. Services never import a backend.

Exactly-once hinges on ``Consumer.commit``: the outputs of a batch, the consumer's
new offsets and the ids it processed become visible together or not at all (one
SQLite transaction; one Kafka transaction with ``send_offsets_to_transaction``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from alpha_panda.stream.topics import TopicSpec

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int


class Record(msgspec.Struct, gc=False):
    """A message read from the log.

    A msgspec ``Struct`` (built in C: a fraction of a frozen dataclass's cost, and the
    embedded log builds one per record appended). Treat it as immutable: only the two
    caches at the end are ever set, by the runtime.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()
    timestamp_ms: int = 0
    # The decoded envelope of ``value``, filled in by the first consumer group that decodes
    # it when a log hands every group the same ``Record`` (the embedded logs): envelopes are
    # immutable, so the other groups reuse it.
    decoded: object = None
    # The ``id`` header as text, cached by the first reader that needs it (``record_ids``):
    # every group of an embedded log dedups the same records by it. None: not yet known.
    eid: str | None = None

    def __eq__(self, other: object) -> bool:
        """The message's fields only: the caches are no part of a record's identity."""
        if not isinstance(other, Record):
            return NotImplemented
        return (self.topic, self.partition, self.offset, self.key, self.value, self.headers,
                self.timestamp_ms) == (other.topic, other.partition, other.offset, other.key,
                                       other.value, other.headers, other.timestamp_ms)

    def __repr__(self) -> str:
        return (f"Record(topic={self.topic!r}, partition={self.partition}, "
                f"offset={self.offset}, key={self.key!r}, value={self.value!r}, "
                f"headers={self.headers!r}, timestamp_ms={self.timestamp_ms})")

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class Output(msgspec.Struct, frozen=True, gc=False):
    """A message to append. The log picks the partition from the key unless one is given.

    ``envelope``: the envelope ``value`` encodes (with the default codec), when the
    producer has it at hand; an embedded log hands it to its readers as ``Record.decoded``
    so they need not decode what was just encoded. Never written to the log.
    """

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()
    partition: int | None = None
    envelope: object = None


@dataclass(frozen=True, slots=True)
class Assignment:
    partitions: frozenset[TopicPartition] = field(default_factory=frozenset)


RebalanceCallback = Callable[[Sequence[TopicPartition]], Awaitable[None]]


class Consumer(Protocol):
    """A member of a consumer group. Offsets are committed only through ``commit``."""

    @property
    def group(self) -> str: ...

    def assignment(self) -> frozenset[TopicPartition]: ...

    async def poll(self, max_records: int = 500, timeout: float = 0.1) -> list[Record]:
        """Next records of the assigned partitions, in offset order per partition."""
        ...

    async def commit(
        self,
        outputs: Sequence[Output],
        offsets: Mapping[TopicPartition, int],
        processed_ids: Sequence[str] = (),
    ) -> None:
        """Atomically append ``outputs``, move the group's offsets (next offset to read)
        and remember ``processed_ids`` for deduplication. Durable when it returns."""
        ...

    async def seen(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` this group has already processed (deduplication)."""
        ...

    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets (absent partitions: nothing committed)."""
        ...

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` next (replay); does not commit."""
        ...

    def position(self, tp: TopicPartition) -> int:
        """Offset of the next record this consumer will return for ``tp``."""
        ...

    async def close(self) -> None:
        """Leave the group. Uncommitted work is redelivered to whoever takes over."""
        ...


class Log(Protocol):
    """A partitioned append-only log with consumer groups."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_topics(self, specs: Iterable[TopicSpec]) -> None:
        """Create missing topics; existing ones are left as they are (idempotent)."""
        ...

    async def list_topics(self) -> dict[str, int]:
        """Existing topics and their partition counts."""
        ...

    async def append(self, outputs: Sequence[Output]) -> None:
        """Append outside any consumer transaction (feeds, tools). Durable when it returns."""
        ...

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        member_id: str | None = None,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> Consumer:
        """Join ``group`` on ``topics``. New groups start at the earliest offset."""
        ...

    async def read(self, tp: TopicPartition, offset: int, limit: int = 500) -> list[Record]:
        """Read records directly, outside any group (inspection, DLQ tools, rebuilds)."""
        ...

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition: the offset the next appended record will get (high watermark)."""
        ...

    async def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        """A group's committed offsets on a topic, per partition."""
        ...


async def read_topic(log: Log, topic: str, batch: int = 1000,
                     upto: Mapping[int, int] | None = None) -> list[Record]:
    """Every record of ``topic`` on the log now, partition by partition (offsets may have
    gaps on Kafka); none for a topic that does not exist. ``upto``: only the records
    before each partition's offset in it (e.g. a group's committed offsets; none of a
    partition it does not name)."""
    records: list[Record] = []
    for partition, end in sorted((await log.end_offsets(topic)).items()):
        stop = end if upto is None else min(end, upto.get(partition, 0))
        tp = TopicPartition(topic, partition)
        offset = 0
        while offset < stop and (got := await log.read(tp, offset, min(batch, stop - offset))):
            records += got if got[-1].offset < stop else [r for r in got if r.offset < stop]
            offset = got[-1].offset + 1
    return records
