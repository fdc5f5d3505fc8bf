"""Dead letters: building them (runtime) and the operator's tools (list, show, replay).

A dead letter keeps the original record's bytes, key and headers, so ``replay`` appends
exactly what failed back to its topic; the ``id`` header is unchanged, so consumers'
deduplication still applies. Replay progress is a consumer group, ``dlq-replay.<topic>``:
a letter is replayed once, however often the tool is run.

A letter whose record failed with ``DecodeError`` (a malformed payload) is skipped: its
bytes fail the same way on replay and only come back as a new dead letter. Those letters
have their own group, ``dlq-replay-undecodable.<topic>``, moved only when the operator asks
for them (``include_undecodable``, e.g. after a schema fix), so skipping one by default
never loses it.

A record that several services failed on (a malformed tick: every consumer of
``market.ticks``) has a letter from each; one copy back on the topic answers them all, so
a replay appends it once (kept as the replay group's processed ids, one per record and
service, so a later run does not append it again either) and moves past the other letters.
Appending one per letter put four copies of a tick back, each dead-lettered again by each
service: 16 letters after one replay, 64 after the next.

The copy is addressed to the services whose letters it answers (its last header,
``REPLAY_FOR``), and only they handle it. Every other consumer of the topic handled the
original, and skipped the copy as a duplicate only while the id was still in its
deduplication memory (100,000 ids: minutes of ticks): a replay after that put an old tick
back as the paper engine's latest price, or counted a fill a second time.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from alpha_panda.domain.errors import DecodeError, ValidationError
from alpha_panda.domain.events import CODEC, DeadLetter, Envelope, derive_id, new_envelope
from alpha_panda.stream.emit import Emit, record_id, to_output
from alpha_panda.stream.log import Consumer, Log, Output, Record, TopicPartition
from alpha_panda.stream.records import REPLAY_FOR
from alpha_panda.stream.topics import dlq_topic, is_dlq

log_ = structlog.get_logger(__name__)
_REPLAY_IDLE_S = 10.0  # give up waiting for a group assignment (Kafka joins) after this


def dead_letter_output(record: Record, exc: BaseException, *, attempts: int,
                       service: str) -> Output:
    """The ``T.dlq`` record for ``record`` whose handling failed with ``exc``."""
    origin = record_id(record) or f"{record.topic}/{record.partition}/{record.offset}"
    now = time.time_ns()
    letter = DeadLetter(
        topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
        value=record.value, headers=[(k, v) for k, v in record.headers],
        error_class=type(exc).__name__, error=str(exc),
        stack="".join(traceback.format_exception(exc))[-8000:], attempts=attempts,
        service=service, failed_at=now,
        replay=f"alpha-panda dlq replay --topic {record.topic}")
    env = new_envelope(letter, id=derive_id(origin, f"dead_letter:{service}:{record.offset}"),
                       ts=now, source=service,
                       key=record.key.decode(errors="replace") if record.key else "",
                       correlation_id=origin)
    return to_output(Emit(dlq_topic(record.topic), env), partition=0)


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One dead letter as stored: where it is in the DLQ topic, and its content."""

    dlq_topic: str
    partition: int
    offset: int
    envelope: Envelope[DeadLetter]

    @property
    def letter(self) -> DeadLetter:
        return self.envelope.data


@dataclass(slots=True)
class ReplayResult:
    """What a replay did (or, dry, would do). ``replayed``: the letters whose record went
    back on the topic; ``same_record``: letters of a record already replayed (another
    service's letter of it), not appended again; ``skipped``: letters that failed to decode,
    left for ``include_undecodable``; ``unreadable``: records of the DLQ topic that are not
    dead letters at all."""

    topic: str
    dry_run: bool
    replayed: list[DeadLetterEntry] = field(default_factory=list)
    same_record: list[DeadLetterEntry] = field(default_factory=list)
    skipped: list[DeadLetterEntry] = field(default_factory=list)
    unreadable: int = 0
    records: set[str] = field(default_factory=set)  # (record, service)s replayed (_replayed_for)


def _record_key(letter: DeadLetter) -> str:
    """The failed record's place on its topic, which each service's letter of it names.
    (Not its event id: a replayed copy that fails again is a record of its own, at its own
    offset, whose letters can be replayed in turn, e.g. after a further fix.)"""
    return f"{letter.topic}/{letter.partition}/{letter.offset}"


def failed_to_decode(letter: DeadLetter) -> bool:
    """Whether ``letter``'s record was dead-lettered because it does not decode: replayed
    unchanged, it fails the same way again."""
    return letter.error_class == DecodeError.__name__


def _dlq_name(topic: str) -> str:
    return topic if is_dlq(topic) else dlq_topic(topic)


def _decode(record: Record) -> DeadLetterEntry:
    env = CODEC.decode_as(record.value, DeadLetter)
    return DeadLetterEntry(record.topic, record.partition, record.offset, env)


async def list_dead_letters(log: Log, topic: str | None = None,
                            limit: int = 100) -> list[DeadLetterEntry]:
    """The most recent ``limit`` dead letters of ``topic`` (or of every DLQ topic)."""
    topics = await log.list_topics()
    names = [_dlq_name(topic)] if topic else sorted(t for t in topics if is_dlq(t))
    entries: list[DeadLetterEntry] = []
    for name in names:
        if name not in topics:
            continue
        for p, end in (await log.end_offsets(name)).items():
            # Back from the end until ``limit`` letters are found: on Kafka every
            # transaction's marker takes an offset too (the last ``limit`` offsets of a
            # service's letters held about half as many letters).
            found: list[DeadLetterEntry] = []
            start, step = end, limit
            while len(found) < limit and start > 0:
                lo = max(0, start - step)
                found[:0] = _letters(await _read_range(log, name, p, lo, start))
                start, step = lo, 2 * step
            entries.extend(found)
    entries.sort(key=lambda e: e.letter.failed_at)
    return entries[-limit:]


def _letters(records: Sequence[Record]) -> list[DeadLetterEntry]:
    """The dead letters of ``records``; a record that is none (as ``replay`` counts in
    ``unreadable``) is passed over with a warning, not the end of the listing."""
    out: list[DeadLetterEntry] = []
    for r in records:
        try:
            out.append(_decode(r))
        except DecodeError as exc:
            log_.warning("dlq.unreadable", topic=r.topic, offset=r.offset, error=str(exc))
    return out


async def _read_range(log: Log, topic: str, partition: int, lo: int, hi: int) -> list[Record]:
    """The records of ``topic``'s ``partition`` from offset ``lo`` up to ``hi``."""
    out: list[Record] = []
    offset = lo
    while offset < hi:
        batch = await log.read(TopicPartition(topic, partition), offset, min(500, hi - offset))
        if not batch:
            break
        out.extend(r for r in batch if r.offset < hi)
        offset = batch[-1].offset + 1
    return out


DlqEnds = dict[str, dict[int, int]]  # DLQ topic -> partition -> end offset


async def dead_letter_ends(log: Log) -> DlqEnds:
    """Where each DLQ topic's partitions end: two readings bracket a run's letters."""
    return {name: await log.end_offsets(name)
            for name in sorted(await log.list_topics()) if is_dlq(name)}


async def dead_letters_since(log: Log, before: DlqEnds) -> dict[str, int]:
    """The letters written to each DLQ topic since ``before`` (only topics with any),
    counted record by record: on Kafka each letter's transaction marker takes an offset
    too, and a partition that retention emptied may start again from 0."""
    counts: dict[str, int] = {}
    for name, ends in (await dead_letter_ends(log)).items():
        n = 0
        for p, end in ends.items():
            offset = before.get(name, {}).get(p, 0)
            if offset > end:  # (its offsets started again)
                offset = 0
            while offset < end:
                batch = await log.read(TopicPartition(name, p), offset, min(500, end - offset))
                if not batch:
                    break
                n += sum(1 for r in batch if r.offset < end)
                offset = batch[-1].offset + 1
        if n:
            counts[name] = n
    return counts


class DeadLetterCounts:
    """How many dead letters each DLQ topic of ``log`` has had written, read from the log
    itself, so the figure is the same after a restart (a count kept by the process that
    wrote them started again from 0 with it, and an alert on it went quiet).

    On an embedded log every record takes one offset, so a partition's end offset is its
    count of letters ever written (those past retention included: a counter). On Kafka a
    transaction's marker takes an offset too: the letters are read and counted, all of
    them at the first ``refresh`` and only the new ones after."""

    def __init__(self, log: Log, *, contiguous: bool | None = None) -> None:
        from alpha_panda.stream.embedded import EmbeddedLog

        self._log = log
        self._contiguous = isinstance(log, EmbeddedLog) if contiguous is None else contiguous
        self._read: dict[TopicPartition, tuple[int, int]] = {}  # -> (next offset, count)
        self._lock = asyncio.Lock()

    async def refresh(self) -> dict[str, int]:
        """The letters written to each DLQ topic so far (every DLQ topic, 0 for none)."""
        async with self._lock:
            counts: dict[str, int] = {}
            for name, ends in (await dead_letter_ends(self._log)).items():
                counts[name] = sum([await self._count(TopicPartition(name, p), end)
                                    for p, end in ends.items()])
            return counts

    async def _count(self, tp: TopicPartition, end: int) -> int:
        if self._contiguous:
            return end
        offset, n = self._read.get(tp, (0, 0))
        if offset > end:  # (its offsets started again)
            offset, n = 0, 0
        while offset < end:
            batch = await self._log.read(tp, offset, min(500, end - offset))
            if not batch:
                break
            n += sum(1 for r in batch if r.offset < end)
            offset = batch[-1].offset + 1
        self._read[tp] = (max(offset, end), n)
        return n


async def dead_lettered_by(log: Log, service: str, topics: Iterable[str]
                           ) -> dict[TopicPartition, set[int]]:
    """The offsets of the records of ``topics`` that ``service`` dead-lettered, as its
    letters on their DLQ topics say: what a rebuild of its state passes over, as the
    service did live (read once, as it starts; DLQ topics are small)."""
    on_log = await log.list_topics()
    places: dict[TopicPartition, set[int]] = {}
    for topic in sorted(set(topics)):
        name = dlq_topic(topic)
        if name not in on_log:
            continue
        for p, end in (await log.end_offsets(name)).items():
            for r in await _read_range(log, name, p, 0, end):
                try:
                    d = CODEC.decode_as(r.value, DeadLetter).data
                except DecodeError:
                    continue  # not a dead letter: nothing of the service's
                if d.service == service and d.topic == topic:
                    places.setdefault(TopicPartition(topic, d.partition), set()).add(d.offset)
    return places


async def show(log: Log, topic: str, offset: int, partition: int = 0) -> DeadLetterEntry:
    """The dead letter at ``offset`` of ``topic``'s DLQ."""
    name = _dlq_name(topic)
    batch = await log.read(TopicPartition(name, partition), offset, 1)
    if not batch or batch[0].offset != offset:
        raise ValidationError(f"no dead letter at {name}[{partition}]@{offset}")
    return _decode(batch[0])


async def replay(log: Log, topic: str, *, dry_run: bool = False, limit: int | None = None,
                 include_undecodable: bool = False) -> ReplayResult:
    """Append the original records of ``topic``'s dead letters back to ``topic``.

    Only letters not replayed before are taken (group ``dlq-replay.<topic>``). Letters that
    failed to decode are skipped (listed in ``skipped``) unless ``include_undecodable``:
    then every such letter not replayed before is taken too, including those skipped by
    earlier runs (group ``dlq-replay-undecodable.<topic>``). A dry run lists what would
    be replayed and skipped, and changes nothing. ``limit`` caps the letters replayed.
    """
    name = _dlq_name(topic)
    original = name.removesuffix(".dlq")
    result = ReplayResult(original, dry_run)
    ends = await log.end_offsets(name)
    if not any(ends.values()):
        return result
    await _drain(log.consumer(f"dlq-replay.{original}", [name]), ends, result, limit,
                 undecodable=False, note_skipped=not include_undecodable)
    if include_undecodable:
        await _drain(log.consumer(f"dlq-replay-undecodable.{original}", [name]), ends, result,
                     limit, undecodable=True, note_skipped=False)
    return result


async def _drain(consumer: Consumer, ends: Mapping[int, int], result: ReplayResult,
                 limit: int | None, *, undecodable: bool, note_skipped: bool) -> None:
    """Read ``consumer``'s group up to ``ends`` and replay the letters that failed to
    decode (``undecodable``) or the others; the group moves past both kinds, so the two
    groups together replay each letter once. ``note_skipped``: list the other kind in
    ``result.skipped``."""
    try:
        idle_since = time.monotonic()
        while limit is None or len(result.replayed) < limit:
            assigned = consumer.assignment()
            if len(assigned) == len(ends) and all(
                    consumer.position(tp) >= ends[tp.partition] for tp in assigned):
                break
            if time.monotonic() - idle_since > _REPLAY_IDLE_S:
                break
            records = await consumer.poll(500, 0.2)
            if not records:
                continue
            idle_since = time.monotonic()
            outputs, offsets, keys = await _replay_batch(
                consumer, records, result, undecodable, note_skipped, limit)
            if not result.dry_run:
                await consumer.commit(outputs, offsets, keys)
    finally:
        await consumer.close()


async def _replay_batch(consumer: Consumer, records: Sequence[Record], result: ReplayResult,
                        undecodable: bool, note_skipped: bool, limit: int | None
                        ) -> tuple[list[Output], dict[TopicPartition, int], list[str]]:
    """The outputs, next offsets and processed ids of the records replayed from
    ``records``, up to the letter that would replay a record past ``limit`` (it and the rest
    are read again next time).

    One copy goes back per record, for the services whose letters of it are in the batch
    (``REPLAY_FOR``); it counts as replayed for each, so a later run passes over those
    letters (``result.same_record``), as over every other letter of a record replayed for
    its service before. A letter of a service the copy was not for gets a copy of its own.
    (A record replayed before copies were addressed, by its place alone, went to every
    service: its letters are passed over too.)"""
    letters: list[tuple[Record, DeadLetterEntry | None]] = []
    for r in records:
        try:
            letters.append((r, _decode(r)))
        except DecodeError as exc:
            # Not a dead letter at all: nothing to replay; say so once (the main group) and go on.
            if not undecodable:
                log_.warning("dlq.unreadable", topic=r.topic, offset=r.offset, error=str(exc))
                result.unreadable += 1
            letters.append((r, None))
    asked = [k for _, e in letters if e is not None
             for k in (_record_key(e.letter), _replayed_for(e.letter))]
    # (a dry run commits nothing: what it would replay is only in ``result.records``)
    done = result.records | await consumer.seen(asked)
    copies: dict[str, tuple[DeadLetter, set[str]]] = {}  # record -> (its letter, for whom)
    offsets: dict[TopicPartition, int] = {}
    keys: list[str] = []
    cut = False
    for r, entry in letters:
        if entry is not None and failed_to_decode(entry.letter) == undecodable:
            d = entry.letter
            key, mark = _record_key(d), _replayed_for(d)
            if key in done or mark in done:
                if not cut:
                    result.same_record.append(entry)
            elif key in copies:  # another service's letter of a record going back now
                copies[key][1].add(d.service)
                done.add(mark)
                result.records.add(mark)
                keys.append(mark)
                if not cut:
                    result.same_record.append(entry)
            elif cut or (limit is not None and len(result.replayed) >= limit):
                cut = True  # read again next time; later letters may still join a copy
                continue
            else:
                copies[key] = (d, {d.service})
                done.add(mark)
                result.records.add(mark)
                keys.append(mark)
                result.replayed.append(entry)
        elif entry is not None and note_skipped and not cut:
            result.skipped.append(entry)
        if not cut:
            offsets[r.tp] = r.offset + 1
    outputs = [Output(d.topic, d.key, d.value, _addressed(d.headers, services), d.partition)
               for d, services in copies.values()]
    return outputs, offsets, keys


def _replayed_for(letter: DeadLetter) -> str:
    """The replay group's processed id of ``letter``: its record went back for its service."""
    return f"{_record_key(letter)}#{letter.service}"


def _addressed(headers: Sequence[tuple[str, bytes]], services: set[str]) -> tuple[
        tuple[str, bytes], ...]:
    """The original headers (less a former copy's address) and, last, who the copy is for."""
    kept = tuple((k, v) for k, v in headers if k != REPLAY_FOR)
    return (*kept, (REPLAY_FOR, ",".join(sorted(services)).encode()))
