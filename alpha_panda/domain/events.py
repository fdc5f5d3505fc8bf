"""The one event envelope, deterministic ids and a strict, fast codec.

Every payload type is defined in ``payloads`` and importable from here, with the envelope
that carries it. Every message on the log is an ``Envelope`` encoded as JSON (msgspec).
``type`` names the payload; ``data`` holds it. Ids are deterministic: an output's id is
derived from the id of the event that caused it and the stage that produced it
(``derive_id``), so re-processing the same input after a crash produces byte-identical
outputs.

Prices and money are int paise (see ``values``). Times are int nanoseconds since the
Unix epoch, UTC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import msgspec

from alpha_panda.domain.errors import DecodeError
from alpha_panda.domain.payloads import (
    NO_CHARGES,
    PAYLOAD_TYPES,
    CancelRefused,
    CancelRequested,
    Charges,
    DeadLetter,
    Depth,
    DepthLevel,
    FundsReported,
    KillSwitchSet,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Origin,
    Payload,
    PnlSnapshot,
    Signal,
    SignalRejected,
    SignalValidated,
    StrategyHalted,
)

SCHEMA_VERSION: Final = 1

__all__ = [
    "CODEC",
    "NO_CHARGES",
    "PAYLOAD_TYPES",
    "SCHEMA_VERSION",
    "CancelRefused",
    "CancelRequested",
    "Charges",
    "DeadLetter",
    "Depth",
    "DepthLevel",
    "Envelope",
    "EventCodec",
    "FundsReported",
    "KillSwitchSet",
    "MarketTick",
    "OrderCancelled",
    "OrderFilled",
    "OrderRejected",
    "OrderSubmitted",
    "Origin",
    "P",
    "Payload",
    "PnlSnapshot",
    "Signal",
    "SignalRejected",
    "SignalValidated",
    "StrategyHalted",
    "derive_id",
    "new_envelope",
]


P = TypeVar("P", bound=Payload)


class Envelope(msgspec.Struct, Generic[P], frozen=True, kw_only=True, gc=False):
    """The standard envelope of every message on the log."""

    id: str
    type: str
    ts: int
    source: str
    key: str
    correlation_id: str
    data: P
    broker: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    version: int = SCHEMA_VERSION


class _RawEnvelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: str
    type: str
    ts: int
    source: str
    key: str
    correlation_id: str
    data: msgspec.Raw
    broker: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    version: int = SCHEMA_VERSION


def derive_id(parent_id: str, stage: str, n: int = 0) -> str:
    """Deterministic id of the ``n``-th output of ``stage`` caused by ``parent_id``."""
    digest = hashlib.blake2b(f"{parent_id}|{stage}|{n}".encode(), digest_size=16)
    return digest.hexdigest()


def new_envelope(
    data: P,
    *,
    id: str,
    ts: int,
    source: str,
    key: str,
    broker: str | None = None,
    parent: Envelope[Any] | None = None,
    correlation_id: str | None = None,
) -> Envelope[P]:
    """Build an envelope; with ``parent``, correlation and causation (and trace) follow it."""
    if parent is not None:
        return Envelope(
            id=id,
            type=data.EVENT_TYPE,
            ts=ts,
            source=source,
            key=key,
            broker=broker,
            correlation_id=parent.correlation_id,
            causation_id=parent.id,
            traceparent=parent.traceparent,
            data=data,
        )
    return Envelope(
        id=id,
        type=data.EVENT_TYPE,
        ts=ts,
        source=source,
        key=key,
        broker=broker,
        correlation_id=correlation_id or id,
        data=data,
    )


class EventCodec:
    """Encode envelopes to JSON bytes and decode them strictly.

    ``decode`` reads the envelope, then decodes ``data`` with the payload type its
    ``type`` names; ``decode_as`` is the fast path when the caller knows the type.
    Any malformed input raises ``DecodeError`` with msgspec's message, which names the
    offending field (e.g. ``Expected `int`, got `str` - at `$.data.last_price` ``).
    """

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._raw = msgspec.json.Decoder(_RawEnvelope)
        self._payload = {name: msgspec.json.Decoder(cls) for name, cls in PAYLOAD_TYPES.items()}
        self._typed: dict[type[Payload], msgspec.json.Decoder[Any]] = {}
        # ``encode(envelope) -> bytes``: msgspec's own method, with no Python frame around
        # it (every event appended is encoded once: the feed alone does it per tick).
        self.encode: Callable[[Envelope[Any]], bytes] = self._encoder.encode

    def decode(self, raw: bytes) -> Envelope[Any]:
        try:
            head = self._raw.decode(raw)
        except msgspec.DecodeError as exc:
            raise DecodeError(f"malformed envelope: {exc}") from exc
        decoder = self._payload.get(head.type)
        if decoder is None:
            raise DecodeError(f"unknown event type {head.type!r} at `$.type`")
        try:
            data = decoder.decode(head.data)
        except msgspec.DecodeError as exc:
            raise DecodeError(f"malformed {head.type} payload: {exc} (in `$.data`)") from exc
        return Envelope(
            id=head.id,
            type=head.type,
            ts=head.ts,
            source=head.source,
            key=head.key,
            broker=head.broker,
            correlation_id=head.correlation_id,
            causation_id=head.causation_id,
            traceparent=head.traceparent,
            version=head.version,
            data=data,
        )

    def _typed_decoder(self, payload_type: type[P]) -> msgspec.json.Decoder[Any]:
        decoder = self._typed.get(payload_type)
        if decoder is None:
            decoder = self._typed[payload_type] = msgspec.json.Decoder(Envelope[payload_type])  # type: ignore[valid-type]
        return decoder

    def decode_guessing(self, raw: bytes, guess: str | None) -> Envelope[Any]:
        """``decode``, in one pass when the event is of type ``guess`` (what the last record
        of the same topic was): a third faster for a stream of one type. Same result and
        same errors as ``decode``."""
        cls = PAYLOAD_TYPES.get(guess) if guess is not None else None
        if cls is not None:
            try:
                env: Envelope[Any] = self._typed_decoder(cls).decode(raw)
            except msgspec.DecodeError:
                pass  # another type, or malformed: the two-pass decode says which
            else:
                if env.type == guess:
                    return env
        return self.decode(raw)

    def decode_as(self, raw: bytes, payload_type: type[P]) -> Envelope[P]:
        decoder = self._typed_decoder(payload_type)
        try:
            env: Envelope[P] = decoder.decode(raw)
        except msgspec.DecodeError as exc:
            actual = self.decode(raw).type  # raises the precise error if the bytes are bad
            if actual != payload_type.EVENT_TYPE:
                raise self._wrong_type(payload_type, actual) from exc
            raise DecodeError(f"malformed {actual} envelope: {exc}") from exc
        if env.type != payload_type.EVENT_TYPE:
            raise self._wrong_type(payload_type, env.type)
        return env

    @staticmethod
    def _wrong_type(expected: type[Payload], actual: str) -> DecodeError:
        return DecodeError(f"expected event type {expected.EVENT_TYPE!r}, got {actual!r} at `$.type`")


CODEC: Final = EventCodec()
"""A shared codec; encoders and decoders are stateless and thread-safe for this use."""
