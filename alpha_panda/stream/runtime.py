"""The consumer runtime: poll → dedup → decode → handle → commit outputs with offsets.

``StreamProcessor`` runs one ``Handler`` over a set of topics as a member of a consumer
group. Each batch ends in one ``Consumer.commit`` carrying the handler's outputs, the next
offsets and the processed ids, so a crash anywhere leaves either all of a batch's effects
on the log or none (exactly-once on the log). On the embedded log a batch that emits
nothing may instead be held and committed with the next commit (``BatchRunner``): a crash
then delivers it again, like any batch not yet committed. Failures are handled by error
class (``stream.retry``); poison messages go to ``T.dlq`` in the same commit.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog

from alpha_panda.domain.events import CODEC, Envelope, EventCodec
from alpha_panda.observability.health import ComponentStatus, State
from alpha_panda.stream import metrics
from alpha_panda.stream.batch import BatchOutcome, BatchRunner
from alpha_panda.stream.decoding import decoder_for
from alpha_panda.stream.dedup import RecentIds
from alpha_panda.stream.embedded import EmbeddedLog
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.hot import HotAlerts, HotPartitionTracker
from alpha_panda.stream.log import Consumer, Log, Record, TopicPartition
from alpha_panda.stream.retry import DEFAULT_RETRY_ATTEMPTS, Disposition, classify

__all__ = ["Emit", "Handler", "ProcessorSettings", "ProcessorStats", "StreamProcessor",
           "to_output"]

log_ = structlog.get_logger(__name__)
_gc_frozen = False


def freeze_long_lived_objects() -> None:
    """Tune the cyclic GC for a streaming process, once per process (first processor start).

    Objects alive now (modules, functions, configuration: the start-up state) are frozen
    out of the collector's view; a full collection otherwise walks them all, well over
    100k objects, every second or so under load: 30-150 ms during which no tick moves
    (the pipeline's p99). And full collections are made rarer (after 1000 younger ones,
    not 10): between them the log's tail of recent records, tens of thousands of tracked
    but acyclic objects, would cost a full walk every second. (Young collections stay at
    700 allocations: after 10,000 the pipeline ran 2% fewer instructions per tick, but its
    slowest tick-to-fill at 10,000 ticks/s doubled: 37-51 ms against 12-26 ms in 3 pairs.)
    Frozen objects are still freed when no longer referenced; cycles are still collected,
    by the young generations or the rarer full collections. A full collection runs first,
    so no garbage is frozen.
    """
    global _gc_frozen
    if _gc_frozen:
        return
    _gc_frozen = True
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, max(old, 1000))


class Handler(Protocol):
    """Turns one event into outputs. Optional hooks, called when present:

    - ``on_batch_end() -> Sequence[Emit]``: after each batch (periodic snapshots);
    - ``async ahandle(event, record) -> Sequence[Emit]``: used instead of ``handle``
      (network I/O); ``handle`` is still what a rebuild replays;
    - ``on_assign(tps)`` / ``on_revoke(tps)``: partitions gained / lost;
    - ``async before_rebuild(log)`` / ``after_rebuild()``: around a rebuild (e.g. to read
      what the service itself recorded, which the replay of its inputs must follow);
    - ``rebuild_rank(topic) -> int``: the order a rebuild replays topics in (lowest
      first; by name without it), e.g. fills before the ends of their orders;
    - ``async before_consuming(log)``: awaited on every assignment before the first batch
      (e.g. until another service's rebuild has taken what this one would consume);
    - ``handle_batch(events, records) -> list[(index, Sequence[Emit])]``: a run of one
      partition's records at once (a tight loop over ticks), with exactly the effects of
      ``handle`` on each in turn; the event at ``i`` failing raises ``BatchFailure(i, ...)``
      (``stream.emit``). Undecodable records and duplicates still go through ``handle``.
    """

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]: ...


@dataclass(frozen=True)
class ProcessorSettings:
    """Tuning of a ``StreamProcessor``; the defaults suit the embedded pipeline."""

    batch_size: int = 1000
    poll_timeout: float = 0.05
    max_attempts: int = 5  # retryable errors: attempts before the message is dead-lettered
    # Per error class (class name, most specific first in the MRO wins) overrides of
    # ``max_attempts``: a rate limit clears by waiting, a broker outage takes longer than
    # a hiccup. Classes not named use ``max_attempts``.
    retry_attempts: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RETRY_ATTEMPTS))
    backoff_base: float = 0.05
    backoff_max: float = 5.0
    dedup: bool = True
    dead_letter: bool = True  # False: poison stops the processor instead
    dedup_memory: int = 100_000  # remote dedup stores (Kafka): ids also remembered in memory
    commit_attempts: int = 5
    lag_interval: float = 1.0
    # Readiness: caught up once the lag is read within ``ready_max_lag`` (no grace before
    # that); then not ready while more than ``ready_max_lag`` records behind for
    # ``ready_lag_grace`` seconds, or while the lag has not been read for that long (a batch
    # stuck in its handler). None: caught up once the lag is 0, ready for good.
    ready_max_lag: int | None = None
    ready_lag_grace: float = 30.0
    hot_window: float = 10.0
    hot_factor: float = 2.0
    hot_min_records: int = 1000
    hot_repeat: float = 600.0  # seconds between warnings about a partition that stays hot
    stop_timeout: float = 10.0
    bug_streak: int = 25  # consecutive messages failing with a non-Alpha-Panda exception: a bug
    # Seconds to wait after a small batch (under a quarter of ``batch_size``) before
    # polling again: processors off the tick-to-fill path (portfolio, strategy feedback)
    # take fewer, larger batches, leaving the event loop's turns to the ones on it; with a
    # backlog they never wait. 0: poll again at once.
    linger: float = 0.0
    # Embedded log: a batch that emits nothing is committed with the next batch that does,
    # or after at most this many seconds (sooner when the processor goes idle, is revoked
    # or stops); see ``BatchRunner``. 0: commit every batch at once.
    commit_interval: float = 0.1

    def off_the_fill_path(self, linger: float = 0.01) -> ProcessorSettings:
        """These settings for a processor no fill waits for: ``linger`` unless one is set."""
        return self if self.linger else replace(self, linger=linger)


@dataclass(slots=True)
class ProcessorStats:
    """Counters of one processor since it was built (``processed``: records handled, in
    batches committed or held for the next commit)."""

    processed: int = 0
    emitted: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    errors: int = 0
    lag: int | None = None


class StreamProcessor:
    """Runs ``handler`` over ``topics`` in consumer group ``group`` until stopped.

    ``name`` labels logs, metrics and health; ``rebuild=True`` replays each assigned
    partition up to the committed offset through ``handler.handle`` (outputs dropped)
    before consuming, so in-memory state is restored from the log.
    """

    def __init__(self, log: Log, *, name: str, group: str, topics: Sequence[str],
                 handler: Handler, settings: ProcessorSettings = ProcessorSettings(),
                 rebuild: bool = False, codec: EventCodec = CODEC) -> None:
        self._log = log
        self._name = name
        self._group = group
        self._topics = list(topics)
        self._handler = handler
        self._settings = settings
        self._rebuild = rebuild
        self._codec = codec
        self.stats = ProcessorStats()
        self._state = State.STARTING
        self._detail = ""
        self._caught_up = False
        self._lag_read_at = 0.0  # monotonic time the lag was last read
        self._behind_since: float | None = None  # past ``ready_max_lag`` since then
        self._consumer: Consumer | None = None
        self._recent = RecentIds(settings.dedup_memory)
        self._runner = BatchRunner(self, defer=isinstance(log, EmbeddedLog))
        self._paused: dict[TopicPartition, float] = {}  # partition -> loop time to resume
        self._attempts: dict[tuple[TopicPartition, int], int] = {}
        self._hot = HotPartitionTracker(settings.hot_factor, settings.hot_min_records)
        self._hot_alerts = HotAlerts(settings.hot_repeat)
        # Messages dead-lettered in a row because the handler raised something that is not
        # one of our errors (NameError, KeyError...): past ``bug_streak`` it is a bug in the
        # service, not bad input, and dead-lettering the whole stream would lose it.
        self.bug_streak = 0
        self._embedded = embedded = isinstance(log, EmbeddedLog)
        # In-process logs: every group reads the same records, so decode each only once.
        self.decoder = decoder_for(log, codec, share=embedded)
        # An embedded log answers ``seen`` from memory already; a remote one (Kafka's dedup
        # store) gets this in-memory window in front of it.
        self.local_dedup = not embedded

    # ------------------------------------------------------------------ public surface

    @property
    def name(self) -> str:
        return self._name

    @property
    def group(self) -> str:
        return self._group

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    @property
    def state(self) -> State:
        return self._state

    @property
    def handler(self) -> Handler:
        return self._handler

    @property
    def settings(self) -> ProcessorSettings:
        return self._settings

    @property
    def codec(self) -> EventCodec:
        return self._codec

    @property
    def recent_ids(self) -> RecentIds:
        return self._recent

    def health(self) -> ComponentStatus:
        """Ready once running with its partitions assigned and the lag seen within
        ``ready_max_lag`` (at zero without one), and since then not behind for longer than
        ``ready_lag_grace``; not ready says why (starting, catching up, behind)."""
        s = self.stats
        detail = self._detail
        if not detail and self._paused:
            detail = f"retrying {len(self._paused)} partition(s) after transient errors"
        ready = self._state is State.RUNNING and self._caught_up
        behind = self._behind() if ready else None
        if behind:
            ready, detail = False, "; ".join(d for d in (behind, detail) if d)
        elif self._state is State.RUNNING and not self._caught_up:
            detail = "; ".join(d for d in (self._catching_up(), detail) if d)
        return ComponentStatus(
            name=self._name, state=self._state, ready=ready,
            detail=detail, lag=s.lag, processed=s.processed, errors=s.errors)

    def _catching_up(self) -> str:
        """Why a running processor that has not caught up yet is not ready."""
        lag, limit = self.stats.lag, self._settings.ready_max_lag
        if lag is None:
            return "starting: lag not read yet (partitions being assigned, state rebuilt)"
        within = "" if limit is None else (
            f", ready within {limit:,}: ALPHA_PANDA_RUNTIME__READY_MAX_LAG")
        return f"catching up: {lag:,} records behind{within}"

    def _behind(self) -> str | None:
        """Why a processor that caught up is not ready now (it fell behind), or None."""
        limit, grace = self._settings.ready_max_lag, self._settings.ready_lag_grace
        if limit is None:
            return None
        now = time.monotonic()
        # (the lag is read every lag_interval: a shorter grace would flap between reads)
        if now - self._lag_read_at >= max(grace, 2 * self._settings.lag_interval):
            return (f"lag not read for {now - self._lag_read_at:.0f} s: a batch has run "
                    "that long")
        if self._behind_since is not None and now - self._behind_since >= grace:
            return (f"{self.stats.lag:,} records behind for {now - self._behind_since:.0f} s "
                    f"(more than {limit:,}: ALPHA_PANDA_RUNTIME__READY_MAX_LAG)")
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set (or a fatal error), then commit and leave the group."""
        freeze_long_lived_objects()
        consumer = self._log.consumer(self._group, self._topics, on_assign=self._on_assign,
                                      on_revoke=self._on_revoke)
        self._consumer = consumer
        self._state = State.RUNNING
        log_.info("processor.started", service=self._name, group=self._group,
                  topics=self._topics, rebuild=self._rebuild)
        waker = asyncio.create_task(self._wake_on(stop, consumer))
        next_lag = 0.0
        next_hot = time.monotonic() + self._settings.hot_window
        linger = self._settings.linger
        batch_size = self._settings.batch_size
        try:
            runner = self._runner
            while not stop.is_set():
                timeout = min(self._resume_due(consumer), runner.flush_due())
                records = await consumer.poll(self._settings.batch_size, timeout)
                records = await self._drop_paused(consumer, records)
                if not records and runner.held:
                    await runner.flush(consumer)  # idle, or the held batches are due
                if records:
                    self._hot.observe(records)
                outcome = await runner.run(consumer, records)
                if outcome is BatchOutcome.FATAL:
                    break
                if records:
                    # Embedded polls and commits never suspend while data is waiting: yield
                    # once per batch so the feed, the API and the other groups keep running.
                    await asyncio.sleep(linger if len(records) < batch_size // 4 else 0)
                now = time.monotonic()
                if now >= next_lag or (not records and not self._caught_up):
                    await self._update_lag(consumer)
                    next_lag = now + self._settings.lag_interval
                if now >= next_hot:
                    self._report_hot(consumer)
                    next_hot = now + self._settings.hot_window
        except asyncio.CancelledError:
            # Abrupt stop: the in-flight batch is not committed and will be redelivered,
            # nor are held ones (not even by the revocation as the consumer closes).
            self._runner.discard_held()
            self._detail = "cancelled; uncommitted work will be redelivered"
            log_.warning("processor.cancelled", service=self._name)
            raise
        except Exception as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            if classify(exc) is not Disposition.FATAL:
                raise  # a bug, not an operator matter: let the supervisor see it
            log_.error("processor.fatal", service=self._name, error=str(exc), exc_info=exc)
        finally:
            waker.cancel()
            if self._state is not State.FAILED:
                self._state = State.STOPPING
            try:
                if self._runner.held:  # processed batches that emitted nothing
                    await self._runner.flush(consumer)
            except Exception as exc:  # noqa: BLE001 - they are delivered again instead
                log_.warning("processor.final_commit_failed", service=self._name,
                             error=f"{type(exc).__name__}: {exc}")
            finally:
                # Committed, or (failed, cancelled in a retry's wait) delivered again: not
                # for the revocation as the consumer closes, which must happen whatever.
                self._runner.discard_held()
                try:
                    await asyncio.wait_for(consumer.close(), self._settings.stop_timeout)
                finally:
                    if self._state is State.STOPPING:
                        self._state = State.STOPPED
                    log_.info("processor.stopped", service=self._name,
                              state=self._state.value, processed=self.stats.processed)

    @staticmethod
    async def _wake_on(stop: asyncio.Event, consumer: Consumer) -> None:
        """End a poll that is waiting for records as soon as ``stop`` is set."""
        await stop.wait()
        wakeup = getattr(consumer, "wakeup", None)
        if wakeup is not None:
            wakeup()

    # ------------------------------------------------------------------ used by BatchRunner

    def fail(self, detail: str) -> None:
        """Stop with state FAILED (fatal error); health reports ``detail``."""
        self._fail(detail)

    def _fail(self, detail: str) -> None:
        self._state = State.FAILED
        self._detail = detail
        log_.error("processor.failed", service=self._name, detail=detail)

    def schedule_retry(self, consumer: Consumer, tp: TopicPartition, offset: int,
                       delay: float) -> None:
        """Hold ``tp`` back for ``delay`` seconds; it resumes at ``offset``."""
        self._paused[tp] = time.monotonic() + delay
        pause = getattr(consumer, "pause", None)
        if pause is not None:
            pause([tp])

    def attempts(self) -> dict[tuple[TopicPartition, int], int]:
        return self._attempts

    # ------------------------------------------------------------------ internals

    def _resume_due(self, consumer: Consumer) -> float:
        timeout = self._settings.poll_timeout
        if not self._paused:
            return timeout
        now = time.monotonic()
        due = [tp for tp, at in self._paused.items() if at <= now]
        for tp in due:
            del self._paused[tp]
        resume = getattr(consumer, "resume", None)
        if due and resume is not None:
            resume(due)
        if self._paused:
            timeout = max(0.0, min(timeout, min(self._paused.values()) - now))
        return timeout

    async def _drop_paused(self, consumer: Consumer, records: list[Record]) -> list[Record]:
        """Backends without ``pause``: discard a paused partition's records and rewind it."""
        if not self._paused or not records:
            return records
        keep: list[Record] = []
        rewind: dict[TopicPartition, int] = {}
        for r in records:
            if r.tp in self._paused:
                rewind.setdefault(r.tp, r.offset)
            else:
                keep.append(r)
        for tp, off in rewind.items():
            await consumer.seek(tp, off)
        return keep

    async def _on_assign(self, tps: Sequence[TopicPartition]) -> None:
        log_.info("processor.assigned", service=self._name, partitions=len(tps),
                  topics=sorted({t.topic for t in tps}))
        if self._rebuild:
            before = getattr(self._handler, "before_rebuild", None)
            if before is not None:
                await before(self._log)
            await self._runner.rebuild(self._log, self._group, tps)
            after = getattr(self._handler, "after_rebuild", None)
            if after is not None:
                after()
        wait = getattr(self._handler, "before_consuming", None)
        if wait is not None:
            await wait(self._log)
        hook = getattr(self._handler, "on_assign", None)
        if hook is not None:
            hook(tps)

    async def _on_revoke(self, tps: Sequence[TopicPartition]) -> None:
        log_.debug("processor.revoked", service=self._name, partitions=len(tps))
        if self._runner.held and self._consumer is not None:
            await self._runner.flush(self._consumer)  # while the partitions are still ours
        for tp in tps:
            self._paused.pop(tp, None)
        for tp in self._hot_alerts.forget(tps):
            self._hot_share(tp, 0.0)
        self._attempts = {k: v for k, v in self._attempts.items() if k[0] not in tps}
        hook = getattr(self._handler, "on_revoke", None)
        if hook is not None:
            hook(tps)

    async def _update_lag(self, consumer: Consumer) -> None:
        assigned = consumer.assignment()
        total = 0
        for t in {tp.topic for tp in assigned}:
            ends = await self._log.end_offsets(t)
            lag_t = sum(max(0, ends.get(tp.partition, 0) - consumer.position(tp))
                        for tp in assigned if tp.topic == t)
            metrics.child(metrics.LAG, self._name, t).set(lag_t)
            total += lag_t
        self.stats.lag = total
        self._lag_read_at = now = time.monotonic()
        limit = self._settings.ready_max_lag
        if limit is None or total <= limit:
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = now
            if self._caught_up:
                log_.warning("processor.falling_behind", service=self._name, lag=total,
                             ready_max_lag=limit, grace_s=self._settings.ready_lag_grace)
        # Caught up at the limit, not only at 0: a processor that keeps up with a busy
        # stream (a full-speed replay: a few thousand records behind the feed all along)
        # rarely reads a lag of 0 between two batches, and was reported not ready for as
        # long as it ran, while one that had read 0 once was ready at a larger lag.
        if not self._caught_up and (total == 0 or (limit is not None and total <= limit)):
            self._caught_up = True
            log_.info("processor.caught_up", service=self._name, partitions=len(assigned),
                      lag=total)

    def _report_hot(self, consumer: Consumer) -> None:
        """Every window: the gauge of each partition reported hot, back to 0 once it cools;
        a warning when it turns hot, repeated at most every ``hot_repeat`` seconds."""
        hot = self._hot.report(consumer.assignment())
        warn, cooled = self._hot_alerts.update(hot, time.monotonic())
        for tp in cooled:
            self._hot_share(tp, 0.0)
            log_.debug("processor.hot_partition_cooled", service=self._name, topic=tp.topic,
                       partition=tp.partition)
        for h in hot:
            self._hot_share(h.tp, h.share)
        # Warned on Kafka, where a partition's consumer is one process that a hot one
        # overloads; the embedded log's one process reads them all alike (the gauge shows it).
        say = log_.info if self._embedded else log_.warning
        for h in warn:
            say("processor.hot_partition", service=self._name, topic=h.tp.topic,
                         partition=h.tp.partition, share=round(h.share, 3),
                         fair_share=round(h.fair_share, 3), records=h.records,
                         top_keys=[(k.decode(errors="replace"), n) for k, n in h.top_keys],
                         next_warning_after_s=self._settings.hot_repeat)

    def _hot_share(self, tp: TopicPartition, share: float) -> None:
        metrics.child(metrics.HOT_PARTITION, self._name, tp.topic, str(tp.partition)).set(share)
