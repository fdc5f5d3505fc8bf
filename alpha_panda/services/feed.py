"""Market feed services: publish ``market.ticks`` from the simulator or a replay file.

Both resume after a restart: they read the tail of ``market.ticks`` to find where they
stopped (the ``seq`` header of their own source), so a restarted run neither repeats nor
skips ticks. Tick ids are ``tick_id(source, seq)``, the same ids the backtest uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, cast

import msgspec
import numpy as np
import numpy.typing as npt
import structlog

from alpha_panda.domain.clock import ist_time, today_ist
from alpha_panda.domain.errors import ConfigurationError, DecodeError
from alpha_panda.domain.events import CODEC, Envelope, MarketTick
from alpha_panda.domain.values import format_rupees
from alpha_panda.execution.market import MarketCalendar
from alpha_panda.marketdata.files import (
    TickColumns,
    load_ticks,
    tick_id_prefix,
    tick_rows,
    tick_source,
)
from alpha_panda.marketdata.instruments import BY_TOKEN, SIM_INSTRUMENTS
from alpha_panda.marketdata.simulator import MarketSimulator, SimulatorState, session_start_ns
from alpha_panda.observability.health import ComponentStatus, State
from alpha_panda.observability.tracing import current_traceparent, tracer, tracing_enabled
from alpha_panda.settings import SimulatorSettings
from alpha_panda.stream.emit import record_id
from alpha_panda.stream.log import Log, Output, Record, TopicPartition
from alpha_panda.stream.topics import MARKET_TICKS, partition_for

if TYPE_CHECKING:
    from alpha_panda.strategy.config import StrategyConfig

log = structlog.get_logger(__name__)
SEQ_HEADER = "seq"
TICK_TYPE = MarketTick.EVENT_TYPE
TICK_TYPE_B = TICK_TYPE.encode()


def read_replay(path: Path) -> tuple[TickColumns, float]:
    """The ticks of a replay file and the seconds they took to read (``load_s``)."""
    t0 = time.perf_counter()
    ticks = load_ticks(path)
    return ticks, time.perf_counter() - t0


def check_feed(spec: str) -> Path | None:
    """The replay file of feed ``spec`` (None for ``sim`` and ``kite``), or the error that
    says what is wrong with it: checked by ``run`` and ``service feed`` before they make
    anything on disk, and by ``preflight`` (which passed a mistyped feed that ``run`` then
    refused)."""
    if spec in ("sim", "kite"):
        return None
    if not spec.startswith("replay:"):
        raise ConfigurationError(f"unknown feed {spec!r}: expected sim, replay:PATH or kite")
    if not spec.removeprefix("replay:"):
        raise ConfigurationError("replay: names no tick file (--feed replay:ticks.csv)")
    path = Path(spec.removeprefix("replay:"))
    if path.is_dir():
        raise ConfigurationError(f"replay file {path} is a directory, not a tick file")
    if not path.is_file():
        raise ConfigurationError(f"replay file {path} does not exist")
    return path


class TickPublisher:
    """Encodes ticks of one source into envelopes and appends them to ``market.ticks``."""

    def __init__(self, log_: Log, source: str) -> None:
        self._log = log_
        self.source = source
        self._keys: dict[int, tuple[str, bytes]] = {}  # token -> its key, as str and bytes
        self.published = 0

    async def publish(self, ticks: Sequence[MarketTick], first_seq: int,
                      seqs: Iterable[int] | None = None) -> None:
        """Append ``ticks`` numbered from ``first_seq`` (or numbered ``seqs``)."""
        # The hot path of every feed: envelopes and outputs are built directly (no
        # intermediate Emit), with the standard headers. A tick's sequence number and source
        # are in its id (``tick_id``): a ``seq`` and a ``source`` header cost the feed 0.6 us
        # a tick (``bench/feed.py``: 5.09 against 4.48 us without them) and each process
        # that reads the tick from the file 0.3 us more to decode them again.
        type_h = ("type", TICK_TYPE_B)
        encode = CODEC.encode
        keys = self._keys
        source = self.source
        prefix = tick_id_prefix(source)
        outputs = []
        for seq, tick in zip(count(first_seq) if seqs is None else seqs, ticks):
            eid = f"{prefix}{seq}"  # tick_id(source, seq)
            token = tick.instrument_token
            k = keys.get(token)
            if k is None:
                k = keys[token] = (str(token), str(token).encode())
            env = Envelope(id=eid, type=TICK_TYPE, ts=tick.ts, source=source, key=k[0],
                           correlation_id=eid, data=tick)
            # The envelope rides along: an embedded log's readers take it as decoded.
            outputs.append(Output(MARKET_TICKS, k[1], encode(env), (("id", eid.encode()), type_h),
                                  None, env))
        if tracing_enabled():
            # The traces start here: every event a tick causes (signal, order, fill) copies
            # its traceparent, so each service's batch span links back to this one. Without
            # it no record carried one, and every batch span was a trace linked to nothing.
            # Only with ALPHA_PANDA_TRACING set: stamping after the loop costs the loop nothing.
            with _tracer.start_as_current_span("feed.publish", attributes={
                    "source": source, "ticks": len(outputs)}):
                await self._log.append(_traced(outputs, current_traceparent()))
        else:
            await self._log.append(outputs)
        self.published += len(outputs)


def _traced(outputs: list[Output], traceparent: str | None) -> list[Output]:
    """``outputs`` (ticks as ``publish`` builds them) carrying ``traceparent``."""
    if traceparent is None:
        return outputs
    header = ("traceparent", traceparent.encode())
    traced = []
    for o in outputs:
        env = msgspec.structs.replace(cast(Envelope[MarketTick], o.envelope),
                                      traceparent=traceparent)
        traced.append(Output(o.topic, o.key, CODEC.encode(env), (*o.headers, header), None, env))
    return traced


_tracer = tracer("alpha_panda.feed")


# How far back a partition is searched for the last tick of a source (other sources'
# ticks may follow it): beyond this its ticks are taken as all there.
_MAX_DEPTH = 50_000


@dataclass(frozen=True)
class Tail:
    """Where a source's ticks stop on ``market.ticks``.

    Each partition holds a prefix of the source's ticks that go there, in order (appends
    are ordered per partition), but one append is atomic only on an embedded log: a feed
    killed while a Kafka append was in flight can leave one partition with that batch and
    another without it. So the resume point is per partition: ``last[p]``, the sequence
    number of the source's last tick on partition ``p``.
    """

    records: list[Record]  # the source's last records on every partition
    last: dict[int, int]   # partition -> seq of the source's last tick there
    partitions: int
    unsearched: frozenset[int] = frozenset()  # partitions with none in the last _MAX_DEPTH

    @property
    def next_seq(self) -> int:
        """One past the highest sequence number on any partition (0 on a new log)."""
        return max(self.last.values(), default=-1) + 1

    def missing(self, tokens: npt.NDArray[np.int64], lo: int, hi: int) -> npt.NDArray[np.int64]:
        """The sequence numbers from ``lo`` to ``hi`` (excluded) of the ticks ``tokens``
        (a file's instrument column) whose partition lacks them.

        Only on a partition that holds every tick of the source before ``lo`` that went
        there: one that lacks an older one lost it to retention, not to an append cut short,
        and what it lacks is not to be sent again."""
        if hi <= lo:
            return np.zeros(0, dtype=np.int64)
        top = self.next_seq - 1
        parts = self._parts(tokens[lo:hi])
        last = np.full(self.partitions, top, dtype=np.int64)  # (top: nothing to restore)
        wanted = {p for p in np.unique(parts).tolist() if p not in self.unsearched}
        for p in wanted:
            last[p] = self.last.get(p, -1)
        for p, prev in self._previous(tokens, lo, wanted).items():
            if prev > last[p]:
                last[p] = top
        seqs = np.arange(lo, hi, dtype=np.int64)
        return seqs[seqs > last[parts]]

    def _parts(self, tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The ``market.ticks`` partition of each tick of ``tokens``."""
        uniq, where = np.unique(tokens, return_inverse=True)
        of = np.array([partition_for(str(t).encode(), self.partitions) for t in uniq.tolist()],
                      dtype=np.int64)
        return of[where]

    def _previous(self, tokens: npt.NDArray[np.int64], lo: int,
                  wanted: set[int]) -> dict[int, int]:
        """Per partition of ``wanted``, the seq of the file's last tick there before ``lo``
        (searched backwards, in growing steps; none: not in the result)."""
        found: dict[int, int] = {}
        end, step = lo, 4096
        while end > 0 and len(found) < len(wanted):
            start = max(0, end - step)
            parts = self._parts(tokens[start:end])
            for p in wanted - found.keys():
                hits = np.flatnonzero(parts == p)
                if len(hits):
                    found[p] = start + int(hits[-1])
            end, step = start, step * 2
        return found


async def read_tail(log_: Log, source: str, depth: int = 200) -> Tail:
    """The last records of ``source`` in every partition of ``market.ticks``."""
    records: list[Record] = []
    last: dict[int, int] = {}
    unsearched: set[int] = set()
    prefix = tick_id_prefix(source)
    ends = await log_.end_offsets(MARKET_TICKS)
    for partition, end in ends.items():
        tp = TopicPartition(MARKET_TICKS, partition)
        upto, d = end, depth  # read [upto - d, upto), then further back, each offset once
        while upto > 0:
            start = max(0, upto - d, end - _MAX_DEPTH)
            batch = [(r, seq) for r in await log_.read(tp, start, upto - start)
                     if r.offset < upto and (seq := tick_seq(r, source, prefix)) is not None]
            if batch:
                records += [r for r, _ in batch]
                last[partition] = max(seq for _, seq in batch)
                break
            if end - start >= _MAX_DEPTH and start > 0:
                unsearched.add(partition)
                break
            upto, d = start, d * 8
    return Tail(records, last, len(ends), frozenset(unsearched))


def tick_seq(record: Record, source: str, prefix: str | None = None) -> int | None:
    """The sequence number of ``record`` if it is a tick of ``source`` (``prefix``: its
    ``tick_id_prefix``), else None. A tick's id is its source's prefix and its number; ticks
    appended before 2026-12-05 also carry them in a ``source`` and a ``seq`` header (and
    those before 2026-11-24 only there, their ids being hashes), which are read as they are."""
    named = record.header("source")
    if named is not None:
        raw = record.header(SEQ_HEADER)
        return int(raw) if named == source.encode() and raw is not None else None
    eid = record_id(record)
    prefix = tick_id_prefix(source) if prefix is None else prefix
    if eid is None or not eid.startswith(prefix):
        return None
    digits = eid[len(prefix):]
    return int(digits) if digits.isdigit() else None


async def resume_point(log_: Log, source: str) -> tuple[int, list[Record]]:
    """Next sequence number of ``source`` and its last records (0 and [] on a new log).

    For a live source: ticks an interrupted append left off some partitions are gone
    with the process that had them; a replay restores them (``ReplayFeed``)."""
    tail = await read_tail(log_, source)
    return tail.next_seq, tail.records


class _FeedBase:
    def __init__(self, log_: Log, source: str, name: str) -> None:
        self.publisher = TickPublisher(log_, source)
        self._log = log_
        self._name = name
        self._state = State.STARTING
        self._detail = ""
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    def health(self) -> ComponentStatus:
        return ComponentStatus(name=self._name, state=self._state,
                               ready=self._state is State.RUNNING or self.done.is_set(),
                               detail=self._detail, processed=self.publisher.published)

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        """STOPPED when the block ends, FAILED with the error when it raises: a feed that
        died (a full disk) showed \"stopped\" with no reason, and /health stayed 200."""
        try:
            yield
        except Exception as exc:
            self._state, self._detail = State.FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if self._state is not State.FAILED:
                self._state = State.STOPPED


class SimulatedFeed(_FeedBase):
    """Publishes simulator ticks at ``settings.rate`` per wall second until stopped."""

    SOURCE = "sim"

    def __init__(self, log_: Log, settings: SimulatorSettings) -> None:
        super().__init__(log_, self.SOURCE, "feed.sim")
        self._settings = settings

    async def _simulator(self, today: date | None = None) -> MarketSimulator:
        s = self._settings
        instruments = SIM_INSTRUMENTS
        if s.instruments:
            unknown = [t for t in s.instruments if t not in BY_TOKEN]
            if unknown:
                raise ValueError(f"simulator: unknown instrument tokens {unknown}")
            instruments = tuple(BY_TOKEN[t] for t in s.instruments)
        step_ns = int(1e9 * s.time_scale / s.rate)
        sessions = MarketCalendar.load()  # the paper exchange's sessions and holidays
        # Today at session_start; on a weekend or holiday, the next trading day's open.
        today_open = sessions.next_open_ns(session_start_ns(today or today_ist(), s.session_start))
        if (note := sessions.unknown_years_note(today_open)) is not None:
            log.warning("calendar.years_unknown", detail=note)
        seq, tail = await resume_point(self._log, self.SOURCE)
        state = None
        if tail:
            ticks = sorted((CODEC.decode_as(r.value, MarketTick).data for r in tail),
                           key=lambda t: t.ts)
            # A run of an earlier day goes on in today's session, at yesterday's prices; a
            # run that went through sessions faster than the wall clock goes on from there.
            new_session = ticks[-1].ts < today_open
            prices = {t.instrument_token: t.last_price for t in ticks}
            # the previous closes: the last prices when this is a new session, else what the
            # session's ticks carry
            closes = dict(prices) if new_session else {
                t.instrument_token: t.close for t in ticks if t.close}
            state = SimulatorState(seq=seq, clock_ns=max(ticks[-1].ts, today_open),
                                   prices=prices, closes=closes)
            log.info("feed.resume", source=self.SOURCE, seq=seq, new_session=new_session)
        return MarketSimulator(instruments=instruments, seed=s.seed,
                               volatility_bps=s.per_tick_bps(len(instruments),
                                                             sessions.session_seconds),
                               step_ns=step_ns, state=state, start_ns=today_open,
                               sessions=sessions)

    async def run(self, stop: asyncio.Event) -> None:
        with self._running():
            sim = await self._simulator()
            self._state = State.RUNNING
            rate = self._settings.rate
            started, sent = time.monotonic(), 0
            while not stop.is_set():
                due = int((time.monotonic() - started) * rate) - sent
                if due > 0:
                    first = sim.state.seq
                    await self.publisher.publish(sim.next_ticks(min(due, 5000)), first)
                    sent += min(due, 5000)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=0.02)
                except TimeoutError:
                    pass


class ReplayFeed(_FeedBase):
    """Publishes every tick of a file, as fast as possible or paced at ``speed`` × real time."""

    def __init__(self, log_: Log, path: Path, *, speed: float | None = None,
                 batch: int = 5000, ticks: TickColumns | None = None,
                 max_backlog: int = 4000, linger: float = 0.001,
                 configs: Sequence[StrategyConfig] = (),
                 read: tuple[TickColumns, float] | None = None) -> None:
        """``ticks``: the ticks to publish, as they are; ``read``: the file's ticks and the
        seconds they took to read, read before the run made anything (``SystemRun``)."""
        super().__init__(log_, tick_source(path), "feed.replay")
        self._path = path
        self._configs = configs  # the run's strategies: warned of tokens the file lacks
        self._speed = speed
        # Paced: after each append, the next waits this long (ticks due meanwhile go
        # together), like a producer's linger. Every append wakes every consumer of
        # ``market.ticks``, each a poll and a batch: appending whatever is due on every
        # turn of the event loop kept it busy with those at 10,000 ticks/s, and the
        # ticks queued behind them (see ``bench/pipeline.py``).
        self._linger = linger if speed else 0.0
        self.paced_from: tuple[float, int] | None = None  # (monotonic s, event ns) at start
        self._batch = batch
        self._ticks = ticks
        self._read = read
        # Consumers of an embedded log further behind than this on a partition make the
        # feed wait: past the log's in-memory tail, every group would read (and decode)
        # its own copy from storage, and the run would get slower the further it fell.
        self._max_backlog = max_backlog
        self.total = 0
        self.upto = 0  # the file's ticks before this row are on the log (any run's)
        self.load_s = 0.0

    def load(self) -> TickColumns:
        if self._ticks is None:
            if self._read is not None:
                self._ticks, self.load_s = self._read
            else:
                t0 = time.perf_counter()
                self._ticks = load_ticks(self._path)
                self.load_s = time.perf_counter() - t0
            self._warn_untraded(self._ticks)
            if len(self._ticks):
                note = MarketCalendar.load().unknown_years_note(
                    int(self._ticks.ts[0]), int(self._ticks.ts[-1]))
                if note is not None:
                    log.warning("calendar.years_unknown", file=str(self._path), detail=note)
        self.total = len(self._ticks)
        return self._ticks

    def _warn_untraded(self, cols: TickColumns) -> None:
        """A strategy's tokens with no tick in the file (a typo, another file's): it never
        trades them, which the summary shows only as fewer fills (as ``backtest`` warns)."""
        present = set(np.unique(cols.instrument_token).tolist())
        for config in self._configs:
            missing = [t for t in config.instruments if t not in present]
            if missing and config.enabled:
                log.warning("strategy.instruments_not_in_file", strategy=config.id,
                            source=config.source, instruments=missing, file=str(self._path),
                            detail="no tick of these in the replayed file: this strategy "
                                   "never trades them")

    async def run(self, stop: asyncio.Event) -> None:
        with self._running():
            await self._replay(stop)

    async def _replay(self, stop: asyncio.Event) -> None:
        cols = self.load()
        n = len(cols)
        tail = await read_tail(self._log, self.publisher.source)
        self._check_same_file(cols, tail)
        start = min(tail.next_seq, n)
        if start:
            # What an interrupted append left off some partitions goes first (its ticks
            # are due already); every partition lacks everything from ``start`` on. Only
            # the last append (at most a batch) can have been cut short, and only on a
            # partition that holds the ticks before it (else retention deleted them).
            lost = tail.missing(cols.instrument_token, max(0, start - self._batch), start)
            for i in range(0, len(lost), self._batch):
                seqs = lost[i:i + self._batch].tolist()
                await self.publisher.publish(self._rows(cols, seqs), 0, seqs)
            log.info("feed.resume", source=self.publisher.source, seq=start, total=n,
                     restored=len(lost))
        self._state = State.RUNNING
        backlog = getattr(self._log, "backlog", None)  # embedded logs only
        wall0 = time.monotonic()
        # paced from where it resumes: from the file's first tick, a restart would sit
        # silent for the time already replayed (hours, at --speed 1)
        t0 = int(cols.ts[min(start, n - 1)]) if n else 0
        self.paced_from = (wall0, t0) if self._speed else None
        buffer: list[MarketTick] = []  # rows converted to events, a batch at a time
        first = start  # seq of buffer[0]
        self.upto = start
        seq = start
        while seq < n and not stop.is_set():
            if seq >= first + len(buffer):
                buffer, first = tick_rows(cols, seq, seq + self._batch), seq
            chunk = buffer[seq - first:]
            if self._speed:
                chunk = await self._paced(chunk, t0, wall0, stop)
            await self.publisher.publish(chunk, seq)
            seq += len(chunk)
            self.upto = seq
            await asyncio.sleep(self._linger)
            if backlog is not None:
                while backlog(MARKET_TICKS) > self._max_backlog and not stop.is_set():
                    await asyncio.sleep(0.002)
        if seq >= n:
            self.done.set()
            self._detail = f"replayed {n} ticks"

    def _check_same_file(self, cols: TickColumns, tail: Tail) -> None:
        """Refuse a file whose rows are not the ticks its source (its name) has on the log.

        A replay goes on where the last one of its source stopped: another file of the same
        name (``ticks generate ticks.csv`` for another day) was taken for the first resumed,
        and began past as many of its rows as the first had (or, shorter, sent none). The
        source's last ticks on each partition (a few hundred) are compared with the rows
        of their numbers, once, at the start."""
        source = self.publisher.source
        prefix = tick_id_prefix(source)
        for record in tail.records:
            seq = tick_seq(record, source, prefix)
            if seq is None:
                continue
            try:
                logged: MarketTick | None = CODEC.decode_as(record.value, MarketTick).data
            except DecodeError:
                logged = None
            if seq >= len(cols):
                differs = f"its tick {seq} is past the file's {len(cols)} rows"
            elif (row := tick_rows(cols, seq, seq + 1)[0]) != logged:
                differs = f"row {seq + 1} is {_said(row)} in the file, {_said(logged)} there"
            else:
                continue
            raise ConfigurationError(
                f"{self._path}: market.ticks holds {tail.next_seq} ticks of {source} that are "
                f"not this file's ({differs}): a replay goes on where the last one of its "
                f"file name stopped, and would skip this file's first "
                f"{min(tail.next_seq, len(cols))} rows. Replay it on another --data-dir (or "
                "--log memory), or under another file name")

    @staticmethod
    def _rows(cols: TickColumns, seqs: list[int]) -> list[MarketTick]:
        return [tick_rows(cols, seq, seq + 1)[0] for seq in seqs]

    async def _paced(self, chunk: list[MarketTick], t0: int, wall0: float,
                     stop: asyncio.Event) -> list[MarketTick]:
        """The prefix of ``chunk`` that is due now at ``speed``, waiting for the first one."""
        assert self._speed
        while not stop.is_set():
            now_event = t0 + int((time.monotonic() - wall0) * self._speed * 1e9)
            # Ticks are in time order: a binary search, not a scan of the whole chunk.
            due = bisect_right(chunk, now_event, key=_tick_ts)
            if due:
                return chunk[:due]
            wait = (chunk[0].ts - now_event) / 1e9 / self._speed
            await asyncio.sleep(min(max(wait, 0.001), 0.1))
        return []


def _tick_ts(tick: MarketTick) -> int:
    return tick.ts


def _said(tick: MarketTick | None) -> str:
    if tick is None:
        return "a malformed tick"
    return (f"token {tick.instrument_token} at {format_rupees(tick.last_price)} on "
            f"{ist_time(tick.ts)}")
