"""What handlers return (``Emit``) and how it becomes a log ``Output``.

Every producer puts the envelope's ``id``, ``type`` and (when present) ``traceparent``
in the record headers, so consumers can deduplicate and trace without decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alpha_panda.domain.events import CODEC, Envelope, EventCodec
from alpha_panda.stream.log import Headers, Output, Record


@dataclass(frozen=True, slots=True)
class Emit:
    """An output of a handler: ``envelope`` goes to ``topic``, keyed by ``envelope.key``."""

    topic: str
    envelope: Envelope[Any]


def envelope_headers(envelope: Envelope[Any]) -> Headers:
    """The standard headers of an envelope: ``id``, ``type``, ``traceparent``."""
    if envelope.traceparent:
        return (("id", envelope.id.encode()), ("type", envelope.type.encode()),
                ("traceparent", envelope.traceparent.encode()))
    return (("id", envelope.id.encode()), ("type", envelope.type.encode()))


def to_output(emit: Emit, codec: EventCodec = CODEC, partition: int | None = None) -> Output:
    """The log ``Output`` of ``emit``: encoded envelope, utf-8 key and standard headers."""
    env = emit.envelope
    return Output(emit.topic, env.key.encode(), codec.encode(env), envelope_headers(env),
                  partition)


def record_id(record: Record) -> str | None:
    """The event id a record carries in its ``id`` header, if any."""
    raw = record.header("id")
    return raw.decode() if raw is not None else None


Emitted = tuple[int, Sequence[Emit]]
"""What ``handle_batch`` returns: (index of the event in the batch, that event's outputs),
for the events that had outputs, in order."""


class BatchFailure(Exception):
    """Raised by a handler's ``handle_batch`` when the event at ``index`` failed.

    ``done`` holds the outputs of the events before ``index`` (all handled), ``cause`` the
    error of event ``index``; the events after it were not touched. The runtime commits the
    first ones, applies its error policy to the failed one and goes on with the rest, so a
    batch handler behaves exactly as ``handle`` called event by event.
    """

    def __init__(self, index: int, done: list[Emitted], cause: BaseException) -> None:
        super().__init__(f"event {index} of the batch failed: {type(cause).__name__}: {cause}")
        self.index = index
        self.done = done
        self.cause = cause
