"""``KafkaLog``: the ``Log`` port on Kafka / Redpanda through confluent-kafka (librdkafka).

- ``append``: idempotent producer, ``acks=all``, flushed before returning (durable).
- ``consumer``: group members whose ``commit`` is one Kafka transaction (``KafkaConsumer``).
- ``read`` / ``end_offsets``: an assign-only inspector consumer that never commits. End
  offsets are found by reading to partition EOF from just below the reported high
  watermark, which is exact on Kafka and on brokers whose watermark query lags (Tansu).
- ``ensure_topics`` / ``list_topics``: the admin client; topics an output names that do
  not exist yet are created with their registry layout, like the embedded backends.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from itertools import count
from typing import Any

import structlog
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as RdTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from alpha_panda.adapters.kafka.bridge import ClientThread
from alpha_panda.adapters.kafka.config import KafkaSettings
from alpha_panda.adapters.kafka.consumer import KafkaConsumer
from alpha_panda.adapters.kafka.dedup import DedupStore, MemoryDedupStore
from alpha_panda.adapters.kafka.errors import BrokerError, classify, kafka_error
from alpha_panda.adapters.kafka.produce import produce_all, to_record
from alpha_panda.domain.errors import ConfigurationError, InvariantViolation
from alpha_panda.stream.log import Output, RebalanceCallback, Record, TopicPartition
from alpha_panda.stream.topics import DAY_MS, REGISTRY, KeyKind, TopicSpec

log = structlog.get_logger(__name__)
_members = count(1)
_CHASE_S = 0.01  # how long end_offsets reads a busy partition before trusting the fetch
# ... and, at most, for the end of an idle one whose last offset it has not seen as data
# (a transaction marker) before counting it as data.
_SETTLE_S = 0.25
# ListOffsets timestamps: the log start and the high watermark (``offsets_for_times``).
_EARLIEST, _LATEST = -2, -1


class KafkaLog:
    """A ``Log`` on a Kafka-API broker. ``start`` is optional: first use starts it."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.rdkafka_logger = logging.getLogger("librdkafka")
        self._timeout = settings.operation_timeout_s
        self._admin_thread = ClientThread("kafka-admin")
        self._producer_thread = ClientThread("kafka-append")
        self._inspect_thread = ClientThread("kafka-inspect")
        self._admin: AdminClient | None = None
        self._producer: Producer | None = None
        self._inspector: RdConsumer | None = None
        self._topics: dict[str, int] = {}
        self._consumers: set[KafkaConsumer] = set()
        self._dedup: dict[str, DedupStore] = {}
        self._probes: dict[str, RdConsumer] = {}
        self._uncommitted: RdConsumer | None = None  # made when first needed
        self._closed = False
        self._members_per_group: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect and load the topic list; ``BrokerUnavailable`` if the broker is down."""
        if self._admin is not None:
            return
        common = {"bootstrap.servers": self.settings.bootstrap_servers,
                  "client.id": self.settings.client_id, **self.settings.librdkafka}
        self._admin = AdminClient({**common, "logger": self.rdkafka_logger})  # type: ignore[dict-item]
        self._producer = Producer({**self.settings.producer_config(),
                                   "logger": self.rdkafka_logger})
        self._inspector = RdConsumer(self._inspector_config(self.settings.isolation_level))
        self._topics = await self.list_topics()
        log.info("kafka.started", bootstrap=self.settings.bootstrap_servers,
                 topics=len(self._topics))

    async def close(self) -> None:
        """Close open consumers, flush the producer, release every client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            await consumer.close()
        if self._producer is not None:
            await self._producer_thread.call(self._producer.flush, self._timeout)
        await self._inspect_thread.call(self._close_inspectors)
        for store in self._dedup.values():
            await store.close()
        for thread in (self._admin_thread, self._producer_thread, self._inspect_thread):
            thread.shutdown()
        self._admin = self._producer = self._inspector = None

    # ------------------------------------------------------------------ topics

    async def list_topics(self) -> dict[str, int]:
        """Existing topics (internal ``__*`` ones excluded) and their partition counts."""
        admin = await self._ready_admin()
        try:
            meta = await self._admin_thread.call(admin.list_topics, None, self._timeout)
        except KafkaException as exc:
            raise BrokerError(f"kafka list_topics on {self.settings.bootstrap_servers}: "
                              f"{exc}") from exc
        topics = {name: len(t.partitions) for name, t in meta.topics.items()
                  if not name.startswith("__") and t.error is None}
        self._topics = topics
        return dict(topics)

    async def ensure_topics(self, specs: Iterable[TopicSpec]) -> None:
        """Create the missing topics with their partitions and retention (idempotent)."""
        wanted = {s.name: s for s in specs}
        existing = await self.list_topics()
        missing = [s for name, s in wanted.items() if name not in existing]
        if not missing:
            return
        admin = await self._ready_admin()
        new = [NewTopic(s.name, s.partitions, self.settings.replication_factor,
                        config={"retention.ms": str(s.retention_ms)}) for s in missing]
        futures = await self._admin_thread.call(admin.create_topics, new)
        for name, fut in futures.items():
            try:
                await self._admin_thread.call(fut.result, self._timeout)
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # created concurrently by another process
                raise classify(err, f"create topic {name}") if isinstance(err, KafkaError) \
                    else BrokerError(f"kafka create topic {name}: {exc}") from exc
            self._topics[name] = wanted[name].partitions
        log.info("kafka.topics_created", topics=[s.name for s in missing])

    async def ensure_output_topics(self, outputs: Sequence[Output]) -> None:
        """Create topics ``outputs`` name that do not exist (registry layout, else 1
        partition) and check explicit partitions are in range."""
        unknown = {o.topic for o in outputs} - self._topics.keys()
        if unknown:
            await self.ensure_topics(
                REGISTRY.get(t) if t in REGISTRY else TopicSpec(t, 1, KeyKind.ORIGINAL, 7 * DAY_MS, None)
                for t in sorted(unknown))
        for o in outputs:
            if o.partition is not None and not 0 <= o.partition < self._topics.get(o.topic, 1):
                raise ConfigurationError(f"partition {o.partition} out of range for {o.topic!r}")

    # ------------------------------------------------------------------ produce

    async def append(self, outputs: Sequence[Output]) -> None:
        """Append with the idempotent producer; returns once every record is acknowledged."""
        if not outputs:
            return
        await self._ready_admin()
        await self.ensure_output_topics(outputs)
        assert self._producer is not None
        await self._producer_thread.call(produce_all, self._producer, list(outputs),
                                         self._timeout)

    # ------------------------------------------------------------------ consume

    def consumer(self, group: str, topics: Sequence[str], *, member_id: str | None = None,
                 on_assign: RebalanceCallback | None = None,
                 on_revoke: RebalanceCallback | None = None) -> KafkaConsumer:
        """Join ``group``. Pass a stable ``member_id`` (e.g. service name + instance) so a
        restarted process fences the zombie it replaces; the default derives one from
        ``instance_id`` (stable) or the host and pid (unique per process)."""
        member = member_id or self._member_id(group)
        consumer = KafkaConsumer(self, group, topics, member, on_assign, on_revoke,
                                 self._dedup_store(group))
        self._consumers.add(consumer)
        return consumer

    def _member_id(self, group: str) -> str:
        n = self._members_per_group[group] = self._members_per_group.get(group, 0) + 1
        if self.settings.instance_id:
            # Consumers are created in the same order on every start: the n-th member of a
            # group keeps its id across restarts.
            return f"{self.settings.instance_id}-{n}"
        return f"{socket.gethostname()}-{os.getpid()}-{next(_members)}"

    def forget_consumer(self, consumer: KafkaConsumer) -> None:
        self._consumers.discard(consumer)

    def _dedup_store(self, group: str) -> DedupStore:
        store = self._dedup.get(group)
        if store is None:
            if self.settings.dedup_redis_url:
                from alpha_panda.adapters.redis.dedup import RedisDedupStore

                store = RedisDedupStore(self.settings.dedup_redis_url, group,
                                        ttl_s=self.settings.dedup_ttl_s)
            else:
                store = MemoryDedupStore(self.settings.dedup_memory_size)
            self._dedup[group] = store
        return store

    # ------------------------------------------------------------------ inspection

    async def read(self, tp: TopicPartition, offset: int, limit: int = 500) -> list[Record]:
        """Up to ``limit`` records of ``tp`` from ``offset``, outside any group."""
        if limit <= 0 or tp.topic not in await self._known_topics(tp.topic):
            return []
        return await self._inspect_thread.call(self._read_blocking, tp, max(0, offset), limit)

    def _read_blocking(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        inspector = self._inspector
        assert inspector is not None
        rd_tp = RdTopicPartition(tp.topic, tp.partition)
        low, high = inspector.get_watermark_offsets(rd_tp, timeout=self._timeout)
        # below the log start (retention deleted it): from the oldest kept, as the
        # embedded logs read (the inspector's offset reset is "error")
        offset = max(offset, low or 0)
        if offset >= (high or 0):
            # At or past the reported end (which may lag on Tansu): find the real end
            # first, since fetching beyond it yields neither records nor an EOF.
            end = self._end_offsets_blocking(tp.topic, [tp.partition]).get(tp.partition, 0)
            if offset >= end:
                return []
        inspector.assign([RdTopicPartition(tp.topic, tp.partition, offset)])
        try:
            return self._read_assigned(tp, offset, limit)
        finally:
            # An idle assignment would keep fetching (every millisecond) until the next call.
            inspector.unassign()

    def _read_assigned(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        inspector = self._inspector
        assert inspector is not None
        out: list[Record] = []
        deadline = time.monotonic() + self._timeout
        while len(out) < limit and time.monotonic() < deadline:
            for m in _events(inspector, min(limit - len(out), 10_000)):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return out
                    raise classify(err, f"read {tp.topic}[{tp.partition}]")
                rec = to_record(m)
                if rec.tp == tp and rec.offset >= offset and len(out) < limit:
                    out.append(rec)
        return out

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, one past the last record a consumer can read.

        Kafka transaction markers take offsets too, so right after a transactional commit
        the broker's high watermark is one more than this; reporting the end of the data
        keeps ``end - committed`` (lag) at zero for a consumer that committed its last
        record, as on the embedded backends.
        """
        n = (await self._known_topics(topic)).get(topic, 0)
        if n == 0:
            return {}
        return await self._inspect_thread.call(self._end_offsets_blocking, topic, range(n))

    def _end_offsets_blocking(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        inspector = self._inspector
        assert inspector is not None
        ends: dict[int, int] = {}
        pending: dict[int, tuple[int, int]] = {}  # partition -> (low, reported high)
        marks = self._watermarks(topic, partitions)
        if self.settings.isolation_level == "read_committed":
            # Tansu answers a read-committed ListOffsets with 0 while any transaction is
            # open on the partition, however many committed records it holds: a restarted
            # portfolio read such a partition as empty, rebuilt none of its 35 fills, and
            # counted 791 of 826 fills for the rest of the run. Where the committed end looks
            # empty, the high watermark says whether there is anything to look for.
            empty = [p for p, (low, high) in marks.items() if high <= low]
            if empty:
                highs = self._watermarks(topic, empty, committed=False)
                for p in empty:
                    if highs[p][1] > marks[p][0]:
                        marks[p] = (marks[p][0], highs[p][1])
        for p, (low, high) in marks.items():
            if high <= low:
                ends[p] = high
            else:
                pending[p] = (low, high)
        # Read every pending partition to its end at once, starting just below the
        # reported watermark (exact on Kafka; the last batch's base on Tansu), and step
        # back on the partitions where only transaction markers were found.
        back = 1
        try:
            while pending:
                starts = {p: max(low, high - back) for p, (low, high) in pending.items()}
                found = self._scan(topic, starts)
                for p, (last, eof) in found.items():
                    if last is not None or starts[p] == pending[p][0]:
                        ends[p] = last + 1 if last is not None else eof
                        del pending[p]
                back *= 16
        finally:
            inspector.unassign()
        return dict(sorted(ends.items()))

    def _watermarks(self, topic: str, partitions: Iterable[int], *, committed: bool = True
                    ) -> dict[int, tuple[int, int]]:
        """Per partition, the broker's (log start, high watermark): one ListOffsets request
        per bound for all partitions (``get_watermark_offsets`` sends one per partition, and
        each costs the broker ~0.3 ms of CPU on Tansu: lag checks made it the busiest call).
        The high watermark is the last stable offset for a read-committed inspector, unless
        not ``committed``."""
        inspector = self._inspector if committed else self._uncommitted_inspector()
        assert inspector is not None
        wanted = list(partitions)
        bounds: list[dict[int, int]] = []
        for spec in (_EARLIEST, _LATEST):
            try:
                got = inspector.offsets_for_times(
                    [RdTopicPartition(topic, p, spec) for p in wanted], timeout=self._timeout)
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None:
                    raise classify(err, f"watermarks {topic}") from exc
                raise BrokerError(f"kafka watermarks {topic}: {exc}") from exc
            for tp in got:
                if tp.error is not None:
                    raise classify(tp.error, f"watermarks {topic}[{tp.partition}]")
            bounds.append({tp.partition: max(tp.offset, 0) for tp in got})
        low, high = bounds
        return {p: (low[p], high[p]) for p in high}

    def _scan(self, topic: str, starts: dict[int, int]) -> dict[int, tuple[int | None, int]]:
        """Read each ``topic[p]`` from ``starts[p]`` to its end: p -> (last data offset, end).

        A partition is done at EOF. One that is still being appended to may never reach
        EOF, so after ``_CHASE_S`` it is done at the high watermark of the last fetch if
        its last record read is the one just below it (exact), or if that watermark moved
        (busy: the offsets above the last record read are counted as data, i.e. at most
        the true end plus a transaction marker while it is busy anyway). An idle one whose
        last offset is not data (a trailing transaction marker) waits for its EOF, which
        comes within a fetch, up to ``_SETTLE_S``. (Counting the marker at once, an idle
        partition whose EOF was slower than ``_CHASE_S``, common on a loaded machine, read
        as one record behind: ``run --exit-at-end`` on Tansu waited up to 40 s for two
        exact answers in a row.)
        """
        inspector = self._inspector
        assert inspector is not None
        inspector.assign([RdTopicPartition(topic, p, off) for p, off in starts.items()])
        last: dict[int, int] = {}
        done: dict[int, tuple[int | None, int]] = {}
        first_high: dict[int, int] = {}  # the watermark each partition had after the chase
        now = time.monotonic()
        deadline = now + self._timeout
        chase_until, settle_until = now + _CHASE_S, now + _SETTLE_S
        while len(done) < len(starts):
            if time.monotonic() > deadline:
                raise BrokerError(f"kafka end_offsets({topic}): no end in {self._timeout}s")
            for m in _events(inspector, 10_000):
                err = m.error()
                p = m.partition() or 0
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    done[p] = (last.get(p), m.offset() or 0)
                elif err is not None:
                    raise classify(err, f"end_offsets {topic}[{p}]")
                else:
                    last[p] = max(last.get(p, 0), m.offset() or 0)
            now = time.monotonic()
            if now > chase_until:
                for p, off in last.items():
                    if p in done:
                        continue
                    _, fetched_high = inspector.get_watermark_offsets(
                        RdTopicPartition(topic, p), cached=True)
                    fetched_high = fetched_high or off + 1
                    moved = first_high.setdefault(p, fetched_high) != fetched_high
                    if off + 1 >= fetched_high or moved or now > settle_until:
                        done[p] = (max(off, fetched_high - 1), fetched_high)
        return done

    async def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        """``group``'s committed offsets on ``topic`` (asked without joining the group)."""
        n = (await self._known_topics(topic)).get(topic, 0)
        if n == 0:
            return {}
        return await self._inspect_thread.call(self._committed_blocking, group, topic, n)

    def _committed_blocking(self, group: str, topic: str, n: int) -> dict[int, int]:
        probe = self._probes.get(group)
        if probe is None:
            # Never subscribes, so it never joins (or disturbs) the group; kept for reuse.
            probe = self._probes[group] = RdConsumer({
                "bootstrap.servers": self.settings.bootstrap_servers, "group.id": group,
                "enable.auto.commit": False, **self.settings.librdkafka,
                "logger": self.rdkafka_logger})
        got = probe.committed([RdTopicPartition(topic, p) for p in range(n)],
                              timeout=self._timeout)
        return {p.partition: p.offset for p in got if p.offset >= 0}

    def _inspector_config(self, isolation: str) -> dict[str, Any]:
        """The inspector's consumer: reads and end-offset scans outside any group."""
        return {"bootstrap.servers": self.settings.bootstrap_servers,
                "client.id": self.settings.client_id, **self.settings.librdkafka,
                "group.id": f"{self.settings.client_id}.inspector",
                "enable.auto.commit": False, "enable.partition.eof": True,
                "auto.offset.reset": "error", "isolation.level": isolation,
                # Its reads and end-offset scans wait on each fetch: brokers that hold a
                # fetch for the whole wait even with data ready (Tansu) would add it to
                # every call.
                "fetch.wait.max.ms": 1, "logger": self.rdkafka_logger}

    def _uncommitted_inspector(self) -> RdConsumer:
        """A read-uncommitted twin of the inspector, for the high watermark itself."""
        if self._uncommitted is None:
            self._uncommitted = RdConsumer(self._inspector_config("read_uncommitted"))
        return self._uncommitted

    def _close_inspectors(self) -> None:
        for probe in self._probes.values():
            probe.close()
        self._probes.clear()
        if self._uncommitted is not None:
            self._uncommitted.close()
            self._uncommitted = None
        if self._inspector is not None:
            self._inspector.close()

    # ------------------------------------------------------------------ helpers

    async def _ready_admin(self) -> AdminClient:
        if self._closed:
            raise InvariantViolation("the Kafka log is closed")
        if self._admin is None:
            await self.start()
        assert self._admin is not None
        return self._admin

    async def _known_topics(self, topic: str | None = None) -> dict[str, int]:
        await self._ready_admin()
        if topic is not None and topic not in self._topics:
            await self.list_topics()  # another process may have created it since
        return self._topics


def _events(consumer: RdConsumer, n: int) -> list[Message]:
    """What is buffered, else the first event within 50 ms (``consume`` alone would wait
    for a full batch)."""
    got: list[Message] = consumer.consume(n, 0)
    if got:
        return got
    first = consumer.poll(0.05)
    return [first] if first is not None else []
