"""``KafkaConsumer``: a consumer-group member whose commits are Kafka transactions.

``commit`` = begin → produce outputs → ``send_offsets_to_transaction`` → commit, on a
transactional producer whose ``transactional.id`` is stable per (group, member): a
restarted member fences the zombie it replaces, whose open transaction is aborted. A
commit with offsets but no outputs is a plain synchronous offset commit (nothing to make
atomic; and Tansu drops the offsets of a transaction without records). Processed ids go
to a ``DedupStore`` only after the commit.

Threads: the librdkafka consumer lives on one ``ClientThread`` and the transactional
producer on another. Assignment, positions and pauses are plain Python state of this
object, so the sync parts of the port (``assignment``, ``position``, ``pause``) never touch
librdkafka; pauses and seeks are applied on the consumer thread before the next fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as RdTopicPartition

from alpha_panda.adapters.kafka.bridge import ClientThread
from alpha_panda.adapters.kafka.dedup import DedupStore
from alpha_panda.adapters.kafka.errors import (
    BrokerError,
    classify,
    is_fenced,
    kafka_error,
    transaction_error,
)
from alpha_panda.adapters.kafka.produce import produce_all, record_headers
from alpha_panda.domain.errors import InvariantViolation
from alpha_panda.stream.log import Output, RebalanceCallback, Record, TopicPartition

if TYPE_CHECKING:
    from alpha_panda.adapters.kafka.log import KafkaLog

log = structlog.get_logger(__name__)

# What a transaction wrote: its outputs (without the envelopes, never written) and offsets.
_Signature = tuple[list[tuple[Any, ...]], dict[TopicPartition, int]]


def _signature(outputs: Sequence[Output], offsets: Mapping[TopicPartition, int]) -> _Signature:
    return ([(o.topic, o.key, o.value, o.headers, o.partition) for o in outputs], dict(offsets))


def _unsettled(err: KafkaError) -> bool:
    """A transaction step that timed out and goes on: it must be called again."""
    return bool(err.retriable()) and not err.txn_requires_abort() and not err.fatal()


class KafkaConsumer:
    """A member of ``group`` on ``topics``; see ``alpha_panda.stream.log.Consumer``."""

    def __init__(self, kafka_log: KafkaLog, group: str, topics: Sequence[str], member_id: str,
                 on_assign: RebalanceCallback | None, on_revoke: RebalanceCallback | None,
                 dedup: DedupStore) -> None:
        self._log = kafka_log
        self._settings = kafka_log.settings
        self._group = group
        self._topics = list(topics)
        self._member_id = member_id
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._dedup = dedup
        self._timeout = self._settings.operation_timeout_s
        self._cthread = ClientThread(f"kafka-c-{group}")
        self._pthread = ClientThread(f"kafka-tx-{group}")
        self._consumer: RdConsumer | None = None
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cgm: Any = None  # consumer group metadata of the current generation
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._to_pause: set[TopicPartition] = set()
        self._to_resume: set[TopicPartition] = set()
        self._rewind: dict[TopicPartition, int] = {}
        self._seeks: dict[TopicPartition, int] = {}
        # A transaction step that timed out goes on in the background, and librdkafka
        # refuses every other transactional call until that one is called again:
        # ("commit", what it committed) or ("abort", None), settled by the next commit.
        self._unfinished: tuple[str, _Signature | None] | None = None
        # A commit that went through but whose processed ids the store did not take.
        self._unmarked: _Signature | None = None
        self._start_lock = asyncio.Lock()
        self._commit_lock = asyncio.Lock()
        self._started = False
        self._closed = False

    @property
    def group(self) -> str:
        return self._group

    @property
    def member_id(self) -> str:
        return self._member_id

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._assigned)

    # ------------------------------------------------------------------ start

    async def _start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise InvariantViolation(f"consumer of group {self._group!r} is closed")
            self._loop = asyncio.get_running_loop()
            # Fence the predecessor before reading: its open transaction is aborted.
            await self._pthread.call(self._init_producer)
            await self._cthread.call(self._subscribe)
            self._started = True

    def _init_producer(self) -> None:
        tid = self._settings.transactional_id(self._group, self._member_id)
        producer = Producer({**self._settings.producer_config(self._group, transactional_id=tid),
                             "logger": self._log.rdkafka_logger})
        try:
            producer.init_transactions(self._timeout)
        except KafkaException as exc:
            raise transaction_error(exc, f"init_transactions({tid})") from exc
        self._producer = producer

    def _subscribe(self) -> None:
        consumer = RdConsumer(self._settings.consumer_config(self._group),
                              logger=self._log.rdkafka_logger)
        consumer.subscribe(self._topics, on_assign=self._assigned_cb,
                           on_revoke=self._revoked_cb, on_lost=self._revoked_cb)
        self._consumer = consumer

    # ------------------------------------------------------------------ rebalance (consumer thread)

    def _assigned_cb(self, consumer: RdConsumer, partitions: list[RdTopicPartition]) -> None:
        self._cgm = consumer.consumer_group_metadata()
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        self._positions.update(zip(tps, self._starting_offsets(consumer, partitions),
                                   strict=True))
        self._assigned.update(tps)
        if self._on_assign is not None and tps:
            assert self._loop is not None
            self._cthread.run_coroutine(self._on_assign(sorted(tps)), self._loop)
        # Seeks requested before the fetchers exist are applied through the assignment.
        for p in partitions:
            tp = TopicPartition(p.topic, p.partition)
            p.offset = self._seeks.pop(tp, self._positions[tp])
        consumer.assign(partitions)
        log.info("kafka.assigned", group=self._group, member=self._member_id,
                 partitions=[f"{t.topic}[{t.partition}]" for t in sorted(tps)])

    def _starting_offsets(self, consumer: RdConsumer,
                          partitions: list[RdTopicPartition]) -> list[int]:
        """Per partition, the committed offset, else the log start. Asked again while the
        broker does not answer in time (a hiccup; on Kafka also the offsets of a dead
        member's transaction, which hold the answer back until ``transaction.timeout.ms``
        aborts it): raised from the callback, the error failed the poll and left the
        partitions assigned by the client but not here, never read."""
        if not partitions:
            return []
        deadline = time.monotonic() + self._settings.max_poll_interval_ms / 2000
        while True:
            try:
                committed = consumer.committed(partitions, timeout=self._timeout)
                starts: list[int] = []
                for c in committed:
                    if c.offset < 0:
                        low, _ = consumer.get_watermark_offsets(
                            RdTopicPartition(c.topic, c.partition), timeout=self._timeout)
                        starts.append(max(low, 0))
                    else:
                        starts.append(c.offset)
                return starts
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is None or err.fatal() or time.monotonic() > deadline or not isinstance(
                        classify(err, ""), BrokerError):
                    raise
                log.warning("kafka.assign_waiting", group=self._group, member=self._member_id,
                            error=err.str())

    def _revoked_cb(self, consumer: RdConsumer, partitions: list[RdTopicPartition]) -> None:
        # A member expelled from its group (no poll within max.poll.interval.ms, a broker
        # away for longer than the session; its commit then fails "Unknown member") has no
        # group metadata left: librdkafka raises RuntimeError. Raised here, it skipped the
        # service's on_revoke and failed the poll or close serving the callback (a
        # SystemError on close). The metadata of the lost generation is of no use anyway:
        # the next assignment brings the new one.
        with contextlib.suppress(RuntimeError):
            self._cgm = consumer.consumer_group_metadata()
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        if self._on_revoke is not None and tps:
            assert self._loop is not None
            self._cthread.run_coroutine(self._on_revoke(sorted(tps)), self._loop)
        for tp in tps:
            self._assigned.discard(tp)
            self._positions.pop(tp, None)
            self._paused.discard(tp)
            self._rewind.pop(tp, None)
            self._seeks.pop(tp, None)
        log.info("kafka.revoked", group=self._group, member=self._member_id, count=len(tps))

    # ------------------------------------------------------------------ fetch

    async def poll(self, max_records: int = 500, timeout: float = 0.1) -> list[Record]:
        """Up to ``max_records`` records; returns as soon as any are available."""
        if self._closed:
            raise InvariantViolation(f"poll on a closed consumer of group {self._group!r}")
        await self._start()
        return await self._cthread.call(self._fetch, max_records, timeout)

    def _fetch(self, max_records: int, timeout: float) -> list[Record]:
        consumer = self._consumer
        assert consumer is not None
        self._apply_controls(consumer)
        # consume() waits for a full batch or the timeout; poll() returns on the first
        # message. So: take what is buffered, else wait for one, then take the rest.
        msgs: list[Message] = consumer.consume(max_records, 0)
        if not msgs:
            first = consumer.poll(timeout)
            if first is None:
                return []
            msgs = [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
        return self._records(msgs)

    def _records(self, msgs: list[Message]) -> list[Record]:
        # Once per message on every service: the partition's status is decided once per
        # batch, positions are set once per partition, and a record takes the client's
        # header tuples as they are (~3 us per message less than one ``to_record`` each).
        out: list[Record] = []
        append = out.append
        take: dict[tuple[str, int], TopicPartition] = {}  # partitions returned this batch
        skip: set[tuple[str, int]] = set()  # paused (rewound on resume) or not ours
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            if m.error() is not None:
                self._event(m)
                continue
            topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
            key = (topic, partition)
            if key not in take:
                if key in skip:
                    continue
                tp = TopicPartition(topic, partition)
                if tp in self._paused or tp not in self._assigned:
                    # Fetched before the pause took effect: re-read it after resume.
                    if tp in self._paused:
                        self._rewind.setdefault(tp, offset)
                    skip.add(key)
                    continue
                take[key] = tp
            hs = m.headers()
            append(Record(topic, partition, offset, m.key(), m.value() or b"",
                          record_headers(hs) if hs else (), m.timestamp()[1]))
            last[key] = offset
        for key, offset in last.items():
            self._positions[take[key]] = offset + 1
        return out

    def _event(self, m: Message) -> None:
        """An error event among the messages: EOF is ignored, fatal errors raised."""
        err = m.error()
        assert err is not None
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise classify(err, f"consume {self._group}")
        log.warning("kafka.consume_error", group=self._group, error=str(err))

    def _apply_controls(self, consumer: RdConsumer) -> None:
        if self._to_pause:
            consumer.pause([RdTopicPartition(t.topic, t.partition) for t in self._to_pause])
            self._to_pause.clear()
        if self._to_resume:
            consumer.resume([RdTopicPartition(t.topic, t.partition) for t in self._to_resume])
            self._to_resume.clear()
        for tp, offset in list(self._seeks.items()):
            if tp in self._paused:
                continue
            consumer.seek(RdTopicPartition(tp.topic, tp.partition, offset))
            del self._seeks[tp]

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        """Stop returning records of ``tps`` until ``resume`` (retry backoff)."""
        new = set(tps) & self._assigned
        self._paused |= new
        self._to_pause |= new
        self._to_resume -= new

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        """Return records of ``tps`` again, from where they were paused."""
        back = set(tps) & self._paused
        self._paused -= back
        self._to_resume |= back
        self._to_pause -= back
        for tp in back:
            if tp in self._rewind:
                self._seeks[tp] = self._rewind.pop(tp)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` next; does not commit."""
        if tp not in self._assigned:
            raise InvariantViolation(f"seek on {tp} which member {self._member_id} does not own")
        self._positions[tp] = max(0, offset)
        self._rewind.pop(tp, None)
        self._seeks[tp] = max(0, offset)

    def position(self, tp: TopicPartition) -> int:
        return self._positions.get(tp, 0)

    # ------------------------------------------------------------------ commit

    async def commit(self, outputs: Sequence[Output], offsets: Mapping[TopicPartition, int],
                     processed_ids: Sequence[str] = ()) -> None:
        """One Kafka transaction: outputs + offsets; then remember ``processed_ids``.

        Raises ``TransientError`` when the transaction was aborted (nothing of it is
        visible; retry with the same arguments) and ``InvariantViolation`` when this member
        was fenced by a newer instance of itself (stop the service). A retryable error
        raised after the transaction may have gone through (the broker did not answer its
        commit; the dedup store failed) is settled by the retry with the same arguments,
        which never writes the outputs twice.
        """
        foreign = [tp for tp in offsets if tp not in self._assigned]
        if foreign:
            raise InvariantViolation(
                f"group {self._group!r} member {self._member_id} commits partitions it does not "
                f"own: {foreign}")
        if self._unmarked is not None:
            unmarked, self._unmarked = self._unmarked, None
            if unmarked == _signature(outputs, offsets):
                # The retry of a commit that went through but whose ids were not marked:
                # running its transaction again would write every output twice.
                await self._mark(processed_ids, outputs, offsets)
                return
        if outputs:
            await self._start()
            await self._log.ensure_output_topics(outputs)
            async with self._commit_lock:
                await self._pthread.call(self._transact, list(outputs), dict(offsets), self._cgm)
        elif offsets:
            # Offsets alone need no transaction (nothing else to make atomic with them), and
            # some brokers (Tansu 0.6) drop the offsets of a transaction that produced
            # nothing. A plain synchronous commit is still checked against the generation.
            await self._start()
            async with self._commit_lock:
                await self._cthread.call(self._commit_offsets, dict(offsets))
        await self._mark(processed_ids, outputs, offsets)

    async def _mark(self, ids: Sequence[str], outputs: Sequence[Output],
                    offsets: Mapping[TopicPartition, int]) -> None:
        """Remember ``ids`` of a committed transaction; if the store fails, the retry of the
        same commit (the caller's, same arguments) only marks them."""
        if not ids:
            return
        try:
            await self._dedup.mark(ids)
        except BaseException:
            self._unmarked = _signature(outputs, offsets)
            raise

    def _transact(self, outputs: list[Output], offsets: dict[TopicPartition, int],
                  cgm: Any) -> None:
        producer = self._producer
        assert producer is not None
        if (self._unfinished is not None
                and self._settle(producer) == _signature(outputs, offsets)):
            return  # the commit that timed out was this one, and it went through
        committing = False
        try:
            producer.begin_transaction()
            produce_all(producer, outputs, None)
            if offsets:
                producer.send_offsets_to_transaction(
                    [RdTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()],
                    cgm, self._timeout)
            committing = True
            producer.commit_transaction(self._timeout)
        except KafkaException as exc:
            err = kafka_error(exc)
            if committing and err is not None and _unsettled(err):
                # The broker did not answer in time (a leader election, a pause). The commit
                # may still go through: aborting it is refused, and so is every other call
                # until it is called again. The retry (same arguments) calls it again.
                self._unfinished = ("commit", _signature(outputs, offsets))
                raise BrokerError(
                    f"kafka commit ({self._group}/{self._member_id}): {err.str()}; whether it "
                    "went through is settled by the next commit", err.code()) from exc
            # A fenced producer cannot even abort: its successor already did.
            if err is not None and not err.fatal() and not is_fenced(err):
                self._abort(producer, exc)
            raise transaction_error(exc, f"commit ({self._group}/{self._member_id})") from exc

    def _settle(self, producer: Producer) -> _Signature | None:
        """Call the transaction step that timed out again: what it committed, or None if it
        was aborted (nothing of it visible). Raises while the broker still does not answer."""
        assert self._unfinished is not None
        step, signature = self._unfinished
        if step == "abort":
            self._abort(producer, None)
            return None
        try:
            producer.commit_transaction(self._timeout)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and _unsettled(err):
                raise BrokerError(f"kafka commit ({self._group}/{self._member_id}): "
                                  f"{err.str()}; still not settled", err.code()) from exc
            self._unfinished = None
            if err is None or err.fatal() or is_fenced(err):
                raise transaction_error(exc, f"commit ({self._group}/{self._member_id})"
                                        ) from exc
            self._abort(producer, exc)
            return None
        self._unfinished = None
        log.warning("kafka.commit_settled", group=self._group, member=self._member_id)
        return signature

    def _abort(self, producer: Producer, cause: KafkaException | None) -> None:
        try:
            producer.abort_transaction(self._timeout)
        except KafkaException as abort_exc:
            err = kafka_error(abort_exc)
            # Timed out: it goes on in the background, and is called again by the next commit.
            self._unfinished = ("abort", None) if err is not None and _unsettled(err) else None
            raise transaction_error(abort_exc, f"abort ({self._group})") from (cause or abort_exc)
        self._unfinished = None

    def _flush_on_close(self) -> None:
        """Flush the producer; a fenced one has nothing left to flush, and says so."""
        producer = self._producer
        assert producer is not None
        try:
            producer.flush(self._timeout)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or not is_fenced(err):
                raise transaction_error(exc, f"close ({self._group}/{self._member_id})") from exc
            # A newer instance of this member took over and aborted whatever this producer
            # had open: nothing of it is visible, and closing must not fail on that.
            log.warning("kafka.closed_fenced", group=self._group, member=self._member_id,
                        error=err.str())

    def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        wanted = [RdTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        try:
            result = consumer.commit(offsets=wanted, asynchronous=False)
        except KafkaException as exc:
            raise transaction_error(exc, f"commit offsets ({self._group})") from exc
        for p in result or []:
            if p.error is not None:
                raise classify(p.error, f"commit offsets {p.topic}[{p.partition}]")

    async def seen(self, ids: Sequence[str]) -> set[str]:
        return await self._dedup.seen(ids) if ids else set()

    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        wanted = [RdTopicPartition(t.topic, t.partition) for t in tps]
        if not wanted:
            return {}
        await self._start()
        consumer = self._consumer
        assert consumer is not None
        got = await self._cthread.call(consumer.committed, wanted, self._timeout)
        return {TopicPartition(p.topic, p.partition): p.offset for p in got if p.offset >= 0}

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Leave the group (the revoke callback runs first), then release the clients."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._consumer is not None:
                await self._cthread.call(self._consumer.close)
            if self._producer is not None:
                await self._pthread.call(self._flush_on_close)
        finally:
            self._assigned.clear()
            self._positions.clear()
            self._cthread.shutdown()
            self._pthread.shutdown()
            self._log.forget_consumer(self)
