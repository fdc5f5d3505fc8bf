"""``alpha-panda run``: every service as a task of one asyncio process.

Start order: log and topics → strategy configs → processors (they rebuild their state
from the log) → feed → API. Stop (Ctrl-C, SIGTERM, ``--duration``, or the end of a
replay with ``--exit-at-end``): the feed stops first, the services of ``run`` settle (each
takes what the ones before it made, for up to ``SETTLE_S``), processors finish their
in-flight batch and commit, the read model is flushed, the log is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from alpha_panda.adapters.sqlite_log.lock import service_locks
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.values import Broker
from alpha_panda.marketdata.files import TickColumns
from alpha_panda.observability.health import ComponentStatus, State
from alpha_panda.observability.metrics import set_process_info
from alpha_panda.observability.stalls import LoopWatch
from alpha_panda.observability.tracing import setup_tracing
from alpha_panda.readmodel.cache import Cache
from alpha_panda.services.api_server import api_server, check_port_free
from alpha_panda.services.feed import ReplayFeed, SimulatedFeed, check_feed, read_replay
from alpha_panda.services.live_guard import (
    check_live_feed,
    refuse_sim_beside,
    zerodha_engine_reason,
)
from alpha_panda.services.logs import embedded_file, kafka_settings, open_log
from alpha_panda.services.pipeline import SERVICES, Pipeline, brokers_in_use, build_pipeline
from alpha_panda.services.readmodel import ReadModelWriter
from alpha_panda.services.settling import SETTLE_S, settle
from alpha_panda.services.strategy_configs import load_strategies, strategies_directory
from alpha_panda.services.summary import RunTotals, read_run_totals
from alpha_panda.settings import Settings
from alpha_panda.stream.dlq import (
    DlqEnds,
    dead_letter_ends,
    dead_letters_since,
)
from alpha_panda.stream.log import Log
from alpha_panda.stream.runtime import freeze_long_lived_objects
from alpha_panda.stream.topics import REGISTRY

log = structlog.get_logger(__name__)
# seconds a run cut short (cancelled) gives its services to stop before cancelling them
_CUT_SHORT_STOP_S = 10.0


@dataclass(frozen=True)
class RunOptions:
    duration: float | None = None
    exit_at_end: bool = False
    speed: float | None = None
    progress: bool = True
    summary: bool = False  # read what ``run_summary`` needs from the log before it closes


def open_cache(url: str) -> Cache:
    if url == "memory":
        from alpha_panda.readmodel.memory import MemoryCache

        return MemoryCache()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from alpha_panda.adapters.redis.cache import RedisCache

        return RedisCache(url)
    if url.startswith("sqlite:") and len(url) > len("sqlite:"):
        from alpha_panda.adapters.sqlite_cache import SqliteCache

        return SqliteCache(Path(url.removeprefix("sqlite:")))
    raise ConfigurationError(
        f"unknown cache {url!r}: expected memory, sqlite:PATH or redis://HOST:PORT/DB")


SHARED_CACHE_FILE = "readmodel.sqlite"


def cache_url_of(settings: Settings, *, service: bool) -> str:
    """The read-model cache a process opens: ``cache_url``; but a ``service`` process on the
    embedded log with the in-process default shares ``DATA_DIR/readmodel.sqlite`` with the
    other processes of the data directory, so an API anywhere serves every service's
    documents (the strategies from the runner's process, the portfolio from its own)."""
    if service and settings.cache_url == "memory" and settings.log == "embedded":
        return f"sqlite:{settings.data_dir / SHARED_CACHE_FILE}"
    return settings.cache_url


def make_feed(settings: Settings, pipeline: Pipeline, speed: float | None,
              read: tuple[TickColumns, float] | None = None) -> Any:
    """The feed ``settings.feed`` names: the simulator, a replay file (``read``: its ticks,
    already read) or Kite's ticker."""
    path = check_feed(settings.feed)
    if path is not None:
        return ReplayFeed(pipeline.log, path, speed=speed, configs=pipeline.configs, read=read)
    if settings.feed == "kite":
        from alpha_panda.services.kite_feed import build_kite_feed

        return build_kite_feed(settings, pipeline.log, pipeline.configs)
    return SimulatedFeed(pipeline.log, settings.simulator)


async def _wait_drained(pipeline: Pipeline, feed: Any, stop: asyncio.Event) -> None:
    """Sets ``stop`` once the replay is published and everything downstream has caught up
    (a failed service sets it itself: ``SystemRun._task_done``)."""
    await feed.done.wait()
    while not stop.is_set():
        if await settle(pipeline, timeout=1.0):
            stop.set()
            return
        await asyncio.sleep(0.05)


class SystemRun:
    """One run of the whole system; ``summary`` is filled when it ends."""

    def __init__(self, settings: Settings, options: RunOptions, *,
                 only: str | Sequence[str] | None = None) -> None:
        """``only``: the service, or services, this process runs (``service NAME...``;
        None: every one, ``run``)."""
        names = (only,) if isinstance(only, str) else None if only is None else tuple(only)
        if names is not None:
            unknown = [n for n in names if n not in ("feed", "api", *SERVICES)]
            if unknown or not names:
                raise ConfigurationError(
                    f"unknown service {', '.join(map(repr, unknown)) or '(none given)'}; "
                    f"expected one or more of feed, api, {', '.join(SERVICES)}")
            if len(set(names)) < len(names):
                raise ConfigurationError(f"a service named twice: {' '.join(names)}")
        self.settings = settings
        self.options = options
        # what this process is, in logs and /metrics: "run", or its services ("risk-manager",
        # "risk-manager+paper-engine")
        self.only = None if names is None else "+".join(names)
        self.names = None if names is None else frozenset(names)
        self.pipeline: Pipeline | None = None
        self.feed: Any = None
        self.started = 0.0
        self.stopped = 0.0
        self.stop = asyncio.Event()
        self.drained = asyncio.Event()  # after ``stop``: the feed and services have stopped
        self._api: Any = None
        self.totals: RunTotals | None = None  # with ``options.summary``: for ``run_summary``
        # "name: error" of each service task (a processor, the feed) that failed: the run is
        # incomplete, and the command exits non-zero
        self.failures: list[str] = []
        self._zerodha_runs = False  # the zerodha engine runs on this log (here or elsewhere)
        # records dead-lettered during this run, per DLQ topic (earlier runs' letters not
        # counted): the run goes on past them, so the command tells the operator
        self.dead_letters: dict[str, int] = {}
        self._replay: tuple[TickColumns, float] | None = None  # the replay file, read at start

    async def run(self) -> None:
        # First of all: a SIGTERM (or Ctrl-C) while the run sets itself up (strategies,
        # log, services, the replay file: 0.3-0.5 s, all before its first await) killed
        # the process, exit -15 and not a word; now it is a stop like any other, exit 0.
        self._install_signal_handlers()
        s = self.settings
        if s.api.enabled:
            check_port_free(s.api.host, s.api.port)
        # before the lock and the log are made: a mistyped replay file or strategies
        # directory left an empty log in a new data directory, where a `kill` or `halt`
        # given the same mistyped --data-dir then found one to write to
        strategies_directory(s)
        if self.runs("feed") and (path := check_feed(s.feed)) is not None:
            # (a row that does not read refuses the file, exit 2: found once the log was
            # made, it left an empty one in a new data directory)
            self._replay = read_replay(path)
        file = embedded_file(s.log, s.data_dir)
        if file is None:
            await self._run()
            return
        # One process per service on an embedded log (two `run`s on one data directory
        # each processed every record: fills and P&L came out wrong)
        with service_locks(file, self.services_to_lock()):
            await self._run()

    def runs(self, name: str) -> bool:
        """Does this process run service ``name`` (``feed``, ``api`` or one of SERVICES)?"""
        return self.names is None or name in self.names

    def services_to_lock(self) -> list[str]:
        """The services (and feed) this process runs, each a consumer group or a producer
        of ticks no second process may run on the same log, locked as it starts. The
        zerodha engine is not among them: whether it runs is read from the log, and its
        lock taken then (``_zerodha``)."""
        return [x for x in ("feed", *SERVICES) if x != "zerodha-engine" and self.runs(x)]

    async def _zerodha(self, configs: list[Any], log_: Log,
                       locks: contextlib.ExitStack) -> list[str] | None:
        """The brokers to build the pipeline for (None: those the strategies route to),
        holding the zerodha engine's lock when this process runs it. A process of the
        zerodha engine alone with nothing to do is refused (it sat idle, or held the
        lock of an engine it never built)."""
        s = self.settings
        beside_feed = self.runs("feed") and s.feed != "kite"
        if self.names == frozenset({"feed"}):
            if s.zerodha.live_enabled and beside_feed:
                refuse_sim_beside(s, await zerodha_engine_reason(s, configs, log_))
            return None
        engine_asked = self.names is not None and "zerodha-engine" in self.names
        if engine_asked and not s.zerodha.live_enabled:
            raise ConfigurationError(
                "live trading is off, so the zerodha engine would place nothing: set "
                "ALPHA_PANDA_ZERODHA__LIVE_ENABLED=true to run it")
        reason = await zerodha_engine_reason(s, configs, log_)
        self._zerodha_runs = reason is not None
        if reason is None:
            if engine_asked:
                raise ConfigurationError(
                    "nothing for the zerodha engine to do: no enabled strategy routes to "
                    "zerodha (give it the runner's strategies: --strategies, "
                    "ALPHA_PANDA_STRATEGIES_DIR or ALPHA_PANDA_DATABASE_URL) and it has "
                    "placed no order on this log")
            if s.zerodha.live_enabled and self.only is None:
                log.info("zerodha.engine_not_started", detail="live trading is on, but no "
                         "enabled strategy routes to zerodha and the engine has placed no "
                         "order on this log: paper only")
            return None
        if beside_feed:
            refuse_sim_beside(s, reason)
        log.info("zerodha.engine_runs", reason=reason)
        file = embedded_file(s.log, s.data_dir)
        if file is not None and self.runs("zerodha-engine"):
            locks.enter_context(service_locks(file, ["zerodha-engine"]))
        active = [c for c in configs if c.enabled]
        return list(dict.fromkeys([*brokers_in_use(active), Broker.ZERODHA.value]))

    async def _run(self) -> None:
        s = self.settings
        # /metrics' alpha_panda_process_info: which process this is (it carried no label)
        set_process_info(self.only or "run", log=s.log.split(":", 1)[0],
                         feed=s.feed.split(":", 1)[0] if self.runs("feed") else "",
                         live="true" if s.zerodha.live_enabled else "false")
        if s.tracing != "none":
            # (none: no SDK provider, so the stream's batches open no span and cost nothing)
            setup_tracing(f"alpha-panda.{self.only or 'run'}", s.tracing)
        configs, errors = load_strategies(s)
        if self.runs("feed"):  # (a process of other services has no feed to check)
            check_live_feed(s, configs, alone=not self.runs("strategy-runner"))
        log_ = open_log(s.log, s.data_dir, kafka=kafka_settings(s))
        await log_.start()
        locks = contextlib.ExitStack()  # the zerodha engine's, when it runs here
        try:
            await log_.ensure_topics(REGISTRY.all())
            brokers = await self._zerodha(configs, log_, locks)
            cache = open_cache(cache_url_of(s, service=self.only is not None))
        except BaseException:
            await log_.close()
            locks.close()
            raise
        # every task started here: none outlives the log (the run cancelled as it started,
        # Ctrl-C before it took SIGINT over, closed the log under its running services)
        running: list[asyncio.Task[Any]] = []
        processors_stop = asyncio.Event()
        feed_stop = asyncio.Event()
        watch_task: asyncio.Task[None] | None = None  # beats until the log closes
        try:
            # (``run``'s: a process of one service reports none, and reads no DLQ topic)
            dlq_before: DlqEnds = await dead_letter_ends(log_) if self.only is None else {}
            services = [x for x in SERVICES if self.runs(x)]
            self.pipeline = pipeline = build_pipeline(s, log_, configs, errors, services=services,
                                                      brokers=brokers)
            feed: Any = None
            if self.runs("feed"):
                self.feed = feed = make_feed(s, pipeline, self.options.speed, self._replay)
                if hasattr(feed, "load"):
                    feed.load()  # read the replay file before the clock starts (load_s)
                pipeline.health.register(feed)
            views = pipeline.strategy_views if pipeline.runner is not None else None
            writer = ReadModelWriter(cache, list(pipeline.portfolios.values()),
                                     views, s.runtime.readmodel_interval_s,
                                     risk=list(pipeline.risk.values()))
            if s.runtime.stall_warn_s:
                owners = {} if pipeline.runner is None else pipeline.runner.strategy_code()
                watch = LoopWatch(s.runtime.stall_warn_s, owners=owners)
                watch_task = asyncio.create_task(watch.run(), name="loop-watch")
            freeze_long_lived_objects()  # the start-up state, built: out of the GC's walks
            self.started = time.perf_counter()
            tasks: list[asyncio.Task[Any]] = []
            for p in pipeline.processors:
                tasks.append(task := asyncio.create_task(p.run(processors_stop), name=p.name))
                task.add_done_callback(functools.partial(self._task_done, processor=p))
            feed_task: asyncio.Task[Any] | None = None
            if feed is not None:
                tasks.append(feed_task := asyncio.create_task(feed.run(feed_stop), name="feed"))
                feed_task.add_done_callback(self._task_done)
            writer_task = asyncio.create_task(writer.run(processors_stop), name="readmodel")
            running += [*tasks, writer_task]
            extra = await self._extras(pipeline, cache, feed)
            running += extra
            waiter = await self._stop_condition(pipeline, feed)
            running += waiter
            await self.stop.wait()
            log.info("system.stopping")
            feed_stop.set()
            if feed_task is not None:
                await asyncio.gather(feed_task, return_exceptions=True)
            if self.only is None:  # (a process of some services stops as it is told)
                settled = await settle(pipeline)
                log.info("system.settled" if settled else "system.stopping_unsettled",
                         **({} if settled else {"detail": f"services stop with work left on "
                                                           f"the log for the next start (after "
                                                           f"{SETTLE_S:g} s, or one failed)"}))
            processors_stop.set()
            # (each failure was recorded as its task ended: ``_task_done``)
            await asyncio.gather(*tasks, return_exceptions=True)
            self.stopped = time.perf_counter()
            self.drained.set()
            await writer_task
            if self._api is not None:
                self._api.should_exit = True  # graceful: finish open requests, then return
            for t in waiter:
                t.cancel()
            await asyncio.gather(*extra, *waiter, return_exceptions=True)
            if self.only is None:
                self.dead_letters = await dead_letters_since(log_, dlq_before)
            if self.options.summary and "paper" in pipeline.portfolios:
                self.totals = await read_run_totals(
                    log_, pipeline.portfolios["paper"].ledger.initial_cash)
        finally:
            left = [t for t in running if not t.done()]  # (only when the run was cut short)
            if left:  # stopped as a run stops (what they finished is committed), else cancelled
                feed_stop.set()
                processors_stop.set()
                _, pending = await asyncio.wait(left, timeout=_CUT_SHORT_STOP_S)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*left, return_exceptions=True)
            await cache.close()
            await log_.close()
            locks.close()
            if watch_task is not None:
                watch_task.cancel()
                await asyncio.gather(watch_task, return_exceptions=True)

    async def _extras(self, pipeline: Pipeline, cache: Cache, feed: Any) -> list[asyncio.Task[Any]]:
        tasks: list[asyncio.Task[Any]] = []
        if self.settings.api.enabled and self.runs("api"):
            if self.names is not None:  # services of other processes: ready as they are
                pipeline.health.register(_ServingCheck(self))
                tasks.append(self._watch_groups(pipeline))
            self._api = api_server(self.settings, pipeline, cache)
            tasks.append(asyncio.create_task(self._api.serve(), name="api"))
        if self.options.progress:
            from alpha_panda.services.progress import show_progress

            tasks.append(asyncio.create_task(show_progress(self, self.stop), name="progress"))
        return tasks

    def _watch_groups(self, pipeline: Pipeline) -> asyncio.Task[Any]:
        """The API of a ``service`` process: the health of every service of the pipeline
        run by other processes, from their consumer groups' offsets on the log."""
        from alpha_panda.services.group_lag import GroupLag, watch_groups
        from alpha_panda.services.zerodha_topics import CONTROL_TOPIC, GROUP, SIGNALS_TOPIC

        s = self.settings
        # (built, not run: only to name each group and its topics as the services do)
        dry = build_pipeline(s, pipeline.log, pipeline.configs, pipeline.config_errors,
                             services=[x for x in SERVICES if x != "zerodha-engine"],
                             brokers=pipeline.brokers)
        here = {p.group for p in pipeline.processors}  # (their own health is registered)
        named = [(p.name, p.group, p.topics) for p in dry.processors if p.group not in here]
        if self._zerodha_runs and not self.runs("zerodha-engine"):
            named.append((GROUP, GROUP, [SIGNALS_TOPIC, CONTROL_TOPIC]))
        rt = s.runtime
        groups = [GroupLag(name, group, topics, max_lag=rt.ready_max_lag,
                           grace=rt.ready_lag_grace_s) for name, group, topics in named]
        for g in groups:
            pipeline.health.register(g)
        return asyncio.create_task(watch_groups(pipeline.log, groups, self.stop), name="groups")

    async def _stop_condition(self, pipeline: Pipeline, feed: Any) -> list[asyncio.Task[Any]]:
        tasks = []
        if self.options.duration is not None:
            async def _timer() -> None:
                await asyncio.sleep(self.options.duration or 0)
                self.stop.set()
            tasks.append(asyncio.create_task(_timer()))
        if self.options.exit_at_end:
            tasks.append(asyncio.create_task(_wait_drained(pipeline, feed, self.stop)))
        return tasks

    def _task_done(self, task: asyncio.Task[Any], processor: Any = None) -> None:
        """Record (and log at once) a service task that raised, or a processor that stopped on
        a fatal error (its state FAILED as it ended). A replay run to its end
        (``exit_at_end``) then stops: it could never drain, and used to wait forever; so does
        a process of one service. ``run`` of them all goes on (its health shows the failure)."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None and (processor is None or processor.state is not State.FAILED):
            return
        # (a processor that stopped on a fatal error says which in its health: the Zerodha
        # engine's lost session there tells the trader to log in again)
        error = repr(exc) if exc is not None else (
            processor.health().detail or "stopped on a fatal error (see processor.fatal)")
        self.failures.append(f"{task.get_name()}: {error}")
        log.error("system.task_failed", task=task.get_name(), error=error)
        if self.stop.is_set():
            return
        if self.options.exit_at_end:
            log.error("system.stopping_incomplete", reason="a service failed: the replay "
                      "cannot flow through to its end")
            self.stop.set()
        elif self.only is not None:
            # one service per process (``service``): exit (1) so that its supervisor
            # restarts it, rather than sit idle with its work undone
            log.error("system.stopping_failed", service=self.only)
            self.stop.set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the drain
        self.stop.set()


class _ServingCheck:
    """Health of an API-only process: the services it reports on run elsewhere."""

    name = "api"

    def __init__(self, run: SystemRun) -> None:
        self._run = run

    def health(self) -> ComponentStatus:
        started = bool(self._run._api is not None and self._run._api.started)
        return ComponentStatus(name=self.name, state=State.RUNNING if started else State.STARTING,
                               ready=started)
