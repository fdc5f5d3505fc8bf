"""Operator controls of the running pipeline (the API's ``Control``): the kill switch and
the trader's cancel of one order.

A kill switch is an event on ``{broker}.control``, which the broker's risk manager applies
in log order: durable, audited, restored on restart, and its flatten orders (one market
signal per open position) are exactly-once like every other order. The paper engine reads
it too and cancels every order that arrived by the market's time the switch carries (the
latest tick's, ``market_ts``); the Zerodha engine cancels the account's open orders.

A cancel request (``CancelRequested``) travels the same way, to the trading engine only:
the paper engine stops the order as of the market's time when it was asked (the latest
tick's) and cancels what is left of it, and a rebuild does what it did; the Zerodha engine
asks Kite to cancel it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypeVar

from alpha_panda.api.control import (
    CancelRecord,
    HaltRecord,
    KillSwitchRecord,
    OrderState,
    check_order_id,
)
from alpha_panda.domain.errors import DecodeError, ValidationError
from alpha_panda.domain.events import (
    CODEC,
    CancelRequested,
    KillSwitchSet,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import Broker
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import TopicPartition, read_topic
from alpha_panda.stream.topics import MARKET_TICKS, topic

if TYPE_CHECKING:
    from alpha_panda.stream.log import Log

SOURCE = "kill-switch"
_O = TypeVar("_O", OrderSubmitted, OrderFilled, OrderRejected, OrderCancelled)
_TAIL = 50  # records read back from the end of a control topic for the last switch


class PipelineControl:
    """Appends kill switches and cancel requests to the broker's control topic."""

    def __init__(self, log: Log, requested_by: str = "api") -> None:
        self._log = log
        self._requested_by = requested_by

    async def set_kill_switch(self, broker: str, active: bool, flatten: bool) -> KillSwitchRecord:
        b = _broker(broker)
        now = time.time_ns()
        event = KillSwitchSet(active=active, flatten=flatten and active,
                              requested_by=self._requested_by,
                              market_ts=await self._market_ns() if active else None)
        env = new_envelope(event, id=derive_id(f"control:{b}", "kill_switch", now), ts=now,
                           source=SOURCE, key="kill_switch", broker=b)
        await self._log.append([to_output(Emit(topic(b, "control"), env))])
        return KillSwitchRecord(event.active, event.flatten, now)

    async def halt_strategy(self, broker: str, strategy_id: str, active: bool,
                            flatten: bool) -> HaltRecord:
        b = _broker(broker)
        if not strategy_id or not strategy_id.isprintable() or len(strategy_id) > 128:
            raise ValidationError(f"not a strategy id: {strategy_id!r}")
        now = time.time_ns()
        market = await self._market_ns() if active else None
        event = StrategyHalted(strategy_id=strategy_id, error="halted by the trader" if active
                               else "", requested_by=self._requested_by, active=active,
                               flatten=flatten and active, market_ts=market)
        env = new_envelope(event, id=derive_id(f"control:{b}", f"halt:{strategy_id}", now),
                           ts=now, source=SOURCE, key="halt", broker=b)
        await self._log.append([to_output(Emit(topic(b, "control"), env))])
        return HaltRecord(strategy_id, event.active, event.flatten, now, market)

    async def cancel_order(self, broker: str, order_id: str) -> CancelRecord:
        b = _broker(broker)
        check_order_id(order_id)
        now = time.time_ns()
        market = await self._market_ns()
        event = CancelRequested(order_id=order_id, requested_by=self._requested_by,
                                market_ts=market)
        env = new_envelope(event, id=derive_id(f"control:{b}", f"cancel:{order_id}", now),
                           ts=now, source=SOURCE, key="cancel", broker=b)
        await self._log.append([to_output(Emit(topic(b, "control"), env))])
        return CancelRecord(order_id, now, market)

    async def order_state(self, broker: str, order_id: str) -> OrderState | None:
        """An order as the broker's order topics leave it (None: no such order), for the
        command line: a scan of each topic (the API asks its read model instead)."""
        b = _broker(broker)
        subs = await self._events(b, "orders.submitted", OrderSubmitted, order_id)
        # closed: nothing is left of it, whatever filled before. An order the engine would
        # not place (past the MIS cut-off, a stale live signal) is only an OrderRejected:
        # looked for first, it is not "no order", as for a mistyped id
        rejected = await self._events(b, "orders.rejected", OrderRejected, order_id)
        if rejected:
            return OrderState(order_id, rejected[0].strategy_id, "REJECTED")
        if not subs:
            return None
        strategy_id = subs[0].strategy_id
        if await self._events(b, "orders.cancelled", OrderCancelled, order_id):
            return OrderState(order_id, strategy_id, "CANCELLED")
        fills = await self._events(b, "orders.filled", OrderFilled, order_id)
        if not fills:
            return OrderState(order_id, strategy_id, "SUBMITTED")
        done = any(f.leaves_quantity == 0 for f in fills)
        return OrderState(order_id, strategy_id, "FILLED" if done else "PARTIALLY_FILLED")

    async def _events(self, broker: str, name: str, kind: type[_O], order_id: str) -> list[_O]:
        """The events of one order on ``{broker}.{name}`` (a scan of the whole topic)."""
        needle = order_id.encode()
        out: list[_O] = []
        for r in await read_topic(self._log, topic(broker, name)):
            if needle not in r.value:  # most records: skipped without decoding
                continue
            try:
                data = CODEC.decode_as(r.value, kind).data
            except DecodeError:  # not one of ours: its consumers dead-letter it
                continue
            if data.order_id == order_id:
                out.append(data)
        return out

    async def _market_ns(self) -> int | None:
        """Event time of the latest tick on ``market.ticks`` (None: no tick yet): when the
        market stands as the switch is set, which a simulated or replayed market keeps
        apart from the wall clock."""
        latest: int | None = None
        for partition, end in (await self._log.end_offsets(MARKET_TICKS)).items():
            if end <= 0:
                continue
            for r in await self._log.read(TopicPartition(MARKET_TICKS, partition), end - 1, 1):
                try:
                    ts = CODEC.decode_as(r.value, MarketTick).data.ts
                except DecodeError:  # a malformed tick: the services dead-letter it
                    continue
                latest = ts if latest is None else max(latest, ts)
        return latest

    async def kill_switch(self, broker: str) -> KillSwitchRecord | None:
        """The last kill switch on ``{broker}.control``: the log is the authority, so a
        switch set for a broker whose risk manager is not running (yet) still shows."""
        name = topic(_broker(broker), "control")
        latest: KillSwitchRecord | None = None
        for partition, end in (await self._log.end_offsets(name)).items():
            found = await self._last_switch(TopicPartition(name, partition), end)
            if found is not None and (latest is None or found.set_at > latest.set_at):
                latest = found
        return latest

    async def _last_switch(self, tp: TopicPartition, end: int) -> KillSwitchRecord | None:
        """The last kill switch of one partition, read back from its end a chunk at a time."""
        while end > 0:
            start = max(0, end - _TAIL)
            for r in reversed(await self._log.read(tp, start, end - start)):
                if r.offset >= end:
                    continue
                try:
                    env = CODEC.decode(r.value)
                except DecodeError:  # not one of ours: the risk manager dead-letters it
                    continue
                if isinstance(env.data, KillSwitchSet):
                    return KillSwitchRecord(env.data.active, env.data.flatten, env.ts)
            end = start
        return None


def _broker(broker: str) -> str:
    try:
        return Broker(broker).value
    except ValueError:
        raise ValidationError(f"unknown broker {broker!r}: expected paper or zerodha") from None
