"""Operator controls of the running pipeline (the API's ``Control``): the kill switch."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from alpha_panda.domain.errors import ConfigurationError, ValidationError
from alpha_panda.domain.events import derive_id, new_envelope
from alpha_panda.domain.values import Broker
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.topics import strategy_instrument_key, topic

if TYPE_CHECKING:
    from alpha_panda.services.pipeline import Pipeline

log = structlog.get_logger(__name__)
SOURCE = "kill-switch"


class PipelineControl:
    """Flips a broker's kill switch in its risk manager and, on request, flattens positions.

    Flattening sends a market signal per open position through the normal path (risk →
    trading engine), so it is on the log, audited and exactly-once like every order.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def set_kill_switch(self, broker: str, active: bool, flatten: bool) -> None:
        try:
            b = Broker(broker).value
        except ValueError:
            raise ValidationError(f"unknown broker {broker!r}: expected paper or zerodha") from None
        handler = self._pipeline.risk.get(b)
        if handler is None:
            raise ConfigurationError(f"no {b} risk manager runs in this process")
        handler.engine.set_kill_switch(active)
        log.warning("kill_switch", broker=b, active=active, flatten=flatten)
        if active and flatten:
            now = time.time_ns()
            cause = f"kill:{b}:{now}"
            outputs = []
            for n, sig in enumerate(handler.engine.flatten_signals(now)):
                env = new_envelope(sig, id=derive_id(cause, "flatten", n), ts=now, source=SOURCE,
                                   key=strategy_instrument_key(sig.strategy_id, sig.instrument_token),
                                   broker=b)
                outputs.append(to_output(Emit(topic(b, "signals.raw"), env)))
            if outputs:
                await self._pipeline.log.append(outputs)
