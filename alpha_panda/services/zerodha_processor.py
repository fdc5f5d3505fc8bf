"""The zerodha trading engine's stream processor (``ZerodhaTradingProcessor``).

Apart from the engine (``services.zerodha_engine``), which handles one event at a time: this
runs it, reconciling with Kite before it consumes, keeping the order sync beside it and
reporting the account's funds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import structlog

from alpha_panda.adapters.zerodha.client import KiteRestClient, OrderRefused, funds_reported
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.instruments import InstrumentMaster
from alpha_panda.adapters.zerodha.order_sync import (
    BROKER,
    SOURCE,
    ReconcileReport,
    ZerodhaOrderSync,
)
from alpha_panda.adapters.zerodha.ticker import POSTBACKS
from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.errors import AuthenticationError, DecodeError, RetryableError
from alpha_panda.domain.events import (
    CODEC,
    CancelRequested,
    FundsReported,
    KillSwitchSet,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.observability.health import ComponentStatus, State
from alpha_panda.services.zerodha_topics import CONTROL_TOPIC, GROUP, SIGNALS_TOPIC, check_topics
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import Log, read_topic
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor

if TYPE_CHECKING:
    from alpha_panda.services.zerodha_engine import ZerodhaEngine

log_ = structlog.get_logger(__name__)


class ZerodhaTradingProcessor(StreamProcessor):
    """The engine's stream processor, which also reconciles with Kite before consuming and
    keeps the order sync (postbacks, polling) running beside it.

    It also reads the account's funds from Kite (``margins("equity")``) once the books agree
    and every ``funds_interval_s`` after, and writes them to ``zerodha.control`` as a
    ``FundsReported`` when they changed or the IST day did: the live portfolio's cash, which
    its projector rebuilds from the log. Funds Kite does not give are only logged: trading
    goes on (the portfolio shows its cash as unknown).

    A token error in either part stops both: state FAILED, an alert in the log."""

    def __init__(self, log: Log, settings: ZerodhaSettings, kite: KiteRestClient,
                 instruments: InstrumentMaster, engine: ZerodhaEngine, sync: ZerodhaOrderSync,
                 processor_settings: ProcessorSettings) -> None:
        check_topics([SIGNALS_TOPIC, CONTROL_TOPIC])
        super().__init__(log, name=GROUP, group=GROUP, topics=[SIGNALS_TOPIC, CONTROL_TOPIC],
                         handler=engine, settings=processor_settings)
        self.zerodha = settings
        self.kite = kite
        self.instruments = instruments
        self.engine = engine
        engine.read_switches = self._read_switches
        self.sync = sync
        self.report: ReconcileReport | None = None
        self.funds: tuple[FundsReported, int] | None = None  # the latest on the log, and when

    async def run(self, stop: asyncio.Event) -> None:
        """Load instruments, reconcile, then place orders and follow them until ``stop``."""
        inner = asyncio.Event()
        sync_task: asyncio.Task[None] | None = None
        relay: asyncio.Task[None] | None = None
        funds_task: asyncio.Task[None] | None = None
        try:
            if not await self._prepare(stop):
                return
            POSTBACKS.add(self.sync.on_order_update)
            sync_task = asyncio.create_task(self.sync.run(inner))
            relay = asyncio.create_task(_first(stop, sync_task, inner))
            funds_task = asyncio.create_task(self._follow_funds(inner))
            await super().run(inner)
        except AuthenticationError as exc:
            self._stopped_live(str(exc))
        finally:
            inner.set()  # one part ended: the other must not trade on alone
            if relay is not None:
                relay.cancel()
            if funds_task is not None:
                await funds_task
            POSTBACKS.discard(self.sync.on_order_update)
            if sync_task is not None:
                try:
                    await sync_task
                    await self._last_sync()
                except AuthenticationError as exc:
                    self._stopped_live(str(exc))
            await self.kite.close()

    async def _follow_funds(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.report_funds()
            except (RetryableError, OrderRefused) as exc:
                log_.warning("zerodha.funds_unread", error=str(exc),
                             retry_in_s=self.zerodha.funds_interval_s)
            except AuthenticationError as exc:  # (the engine and the sync stop on it too)
                log_.warning("zerodha.funds_unread", error=str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - the funds are shown, not traded on:
                # an odd answer from Kite (or a failed write) must not end the engine's run,
                # nor skip its shutdown (this task is awaited there)
                log_.error("zerodha.funds_unread", error=f"{type(exc).__name__}: {exc}",
                           alert=True, retry_in_s=self.zerodha.funds_interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.zerodha.funds_interval_s)

    async def report_funds(self, now: int | None = None) -> FundsReported | None:
        """Read the account's funds from Kite; write them to the control topic when they
        differ from the latest there or are of another IST day. The event written, if any."""
        funds = funds_reported(await self.kite.margins("equity"))
        now = time.time_ns() if now is None else now
        if self.funds is not None and self.funds[0] == funds \
                and ist_date(self.funds[1]) == ist_date(now):
            return None
        env = new_envelope(funds, id=derive_id(f"control:{BROKER}", "funds", now), ts=now,
                           source=SOURCE, key="funds", broker=BROKER)
        await self._log.append([to_output(Emit(CONTROL_TOPIC, env))])
        self.funds = (funds, now)
        log_.info("zerodha.funds_reported", cash=funds.cash, opening_balance=funds.opening_balance)
        return funds

    async def _last_sync(self) -> None:
        # orders placed just before the stop: record the fills Kite already has (the rest
        # are found by the next start's reconciliation)
        try:
            await self.sync.sync()
        except RetryableError as exc:
            log_.warning("zerodha.final_sync_failed", error=str(exc))

    def health(self) -> ComponentStatus:
        """The processor's health, with the order sync's trouble (Kite unreachable) shown."""
        status = super().health()
        sync = self.sync.health()
        if sync.detail and status.state is State.RUNNING:
            status.detail = f"order sync: {sync.detail}"
        status.errors += sync.errors
        return status

    async def _prepare(self, stop: asyncio.Event) -> bool:
        """Instruments and reconciliation, retried with backoff while Kite is unreachable
        (no order is placed before the books agree); False when stopped meanwhile."""
        delay = 0.5
        while not stop.is_set():
            try:
                if not len(self.instruments):
                    self.instruments.update(await InstrumentMaster.load(
                        self.zerodha.instruments_dir, self.kite.instruments))
                self.report = await self.sync.reconcile()
                await self._read_switches()
                return True
            except RetryableError as exc:
                log_.warning("zerodha.reconcile_retry", error=str(exc), retry_in_s=delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    delay = min(30.0, delay * 2)
        return False

    async def _read_switches(self) -> None:
        """Every kill switch on the control topic, whichever offset the group resumes at
        (a few records: operator actions), the strategies' recent cancels of orders not
        placed yet (``note_cancel``), and the latest funds reported."""
        for r in await read_topic(self._log, CONTROL_TOPIC):
            try:
                env = CODEC.decode(r.value)
            except DecodeError:  # not an event: the processor dead-letters it
                continue
            if isinstance(env.data, KillSwitchSet):
                self.engine.note_switch(env.data.active, env.ts, env.data.market_ts)
                self.engine.note_flatten(env.data, env.ts)
            elif isinstance(env.data, StrategyHalted):
                self.engine.note_halt(env.data, env.ts)
                self.engine.note_flatten(env.data, env.ts)
            elif isinstance(env.data, FundsReported):
                self.funds = (env.data, env.ts)
            elif isinstance(env.data, CancelRequested):  # a strategy's, before its order
                self.engine.note_cancel(env, env.data)

    def _stopped_live(self, detail: str) -> None:
        log_.error("zerodha.trading_stopped", alert=True, detail=detail)
        self.fail(f"AuthenticationError: {detail}")


async def _first(stop: asyncio.Event, sync: asyncio.Task[None], inner: asyncio.Event) -> None:
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, sync}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    inner.set()
