"""Decoding records once per process, however many consumer groups read them.

With the embedded log, every group of the process reads the same records (a tick is read
by the strategy runner, the paper engine and the portfolio). Envelopes are immutable, so
the first group's decode can serve the others: ``SharedDecoder`` keeps the envelopes of
records of one log. Embedded logs hand every group the very same ``Record`` objects (from
their partition tails), so the envelope is kept on the record itself (``Record.decoded``):
no key to build, no cache to bound, and no record can get another one's envelope.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from alpha_panda.domain.events import CODEC, Envelope, EventCodec
from alpha_panda.stream.log import Log, Record

Decoder = Callable[[Record], Envelope[Any]]


class SharedDecoder:
    """Decode with ``codec``, keeping each envelope on its record for the other groups.

    Only the decoders of the default ``CODEC`` keep envelopes in ``Record.decoded`` (a
    record belongs to one log, so one decoder per log uses the slot); another codec's
    decoder decodes every time, so nobody is ever handed an envelope of another codec.
    The envelope itself goes in the slot, not a tuple: envelopes are not tracked by the
    cyclic GC, so the records of a log's tail cost no more GC work than before.
    """

    def __init__(self, codec: EventCodec) -> None:
        self._decode = codec.decode
        self._guessing = codec.decode_guessing
        self._keep = codec is CODEC
        self._types: dict[str, str] = {}  # topic -> type of the last envelope decoded from it

    def __call__(self, record: Record) -> Envelope[Any]:
        if not self._keep:
            return self._decode(record.value)
        env = record.decoded
        if env is None:
            env = self._decode(record.value)  # raises DecodeError: nothing is kept
            record.decoded = env
        return env  # type: ignore[return-value]

    def many(self, records: Sequence[Record]) -> list[Envelope[Any]]:
        """``[self(r) for r in records]``, in one loop; records of one topic (a partition's
        run) are decoded in one pass each as the type the topic's last envelope had."""
        if not records:
            return []
        if not self._keep:
            decode = self._decode
            return [decode(r.value) for r in records]
        ready = [r.decoded for r in records]  # decoded by another group, or by nobody
        if None not in ready:
            return ready  # type: ignore[return-value]
        guessing = self._guessing
        topic = records[0].topic
        guess = self._types.get(topic)
        out: list[Envelope[Any]] = []
        append = out.append
        for r in records:
            env = r.decoded
            if env is None:
                env = guessing(r.value, guess)
                r.decoded = env
                guess = env.type
            append(env)  # type: ignore[arg-type]
        if guess is not None and records[-1].topic == topic:
            self._types[topic] = guess
        return out


_shared: weakref.WeakKeyDictionary[Any, dict[EventCodec, SharedDecoder]] = (
    weakref.WeakKeyDictionary())


def decoder_for(log: Log, codec: EventCodec, share: bool) -> Decoder:
    """The decoder processors of ``log`` use: shared per (log, codec) when ``share``."""
    if not share:
        decode = codec.decode
        return lambda record: decode(record.value)
    try:
        per_codec = _shared.setdefault(log, {})
    except TypeError:  # a log that cannot be weakly referenced: no sharing
        decode = codec.decode
        return lambda record: decode(record.value)
    dec = per_codec.get(codec)
    if dec is None:
        dec = per_codec[codec] = SharedDecoder(codec)
    return dec
