"""Operator controls of the running pipeline (the API's ``Control``): the kill switch.

A kill switch is an event on ``{broker}.control``, which the broker's risk manager applies
in log order: durable, audited, restored on restart, and its flatten orders (one market
signal per open position) are exactly-once like every other order.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import KillSwitchSet, derive_id, new_envelope
from alpha_panda.domain.values import Broker
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.topics import topic

if TYPE_CHECKING:
    from alpha_panda.stream.log import Log

SOURCE = "kill-switch"


class PipelineControl:
    """Appends kill-switch events to the broker's control topic."""

    def __init__(self, log: Log, requested_by: str = "api") -> None:
        self._log = log
        self._requested_by = requested_by

    async def set_kill_switch(self, broker: str, active: bool, flatten: bool) -> None:
        try:
            b = Broker(broker).value
        except ValueError:
            raise ValidationError(f"unknown broker {broker!r}: expected paper or zerodha") from None
        now = time.time_ns()
        event = KillSwitchSet(active=active, flatten=flatten and active,
                              requested_by=self._requested_by)
        env = new_envelope(event, id=derive_id(f"control:{b}", "kill_switch", now), ts=now,
                           source=SOURCE, key="kill_switch", broker=b)
        await self._log.append([to_output(Emit(topic(b, "control"), env))])
