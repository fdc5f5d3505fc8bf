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

from alpha_panda.domain.events import Envelope, EventCodec
from alpha_panda.stream.log import Log, Record

Decoder = Callable[[Record], Envelope[Any]]
_set_decoded = Record.decoded.__set__  # type: ignore[attr-defined,misc]  # the slot setter


class SharedDecoder:
    """Decode with ``codec``, keeping each envelope on its record for the other groups.

    The envelope is stored in ``Record.decoded`` as ``(decoder, envelope)``: a record read
    by processors of another log or codec is decoded afresh, never given a wrong envelope.
    It lives as long as the record does (the log's tail of recent records).
    """

    def __init__(self, codec: EventCodec) -> None:
        self._decode = codec.decode

    def __call__(self, record: Record) -> Envelope[Any]:
        d = record.decoded
        if d is not None and d[0] is self:  # type: ignore[index]
            return d[1]  # type: ignore[index,no-any-return]
        env = self._decode(record.value)  # raises DecodeError: nothing is kept
        _set_decoded(record, (self, env))
        return env

    def many(self, records: Sequence[Record]) -> list[Envelope[Any]]:
        """``[self(r) for r in records]``, in one loop."""
        me = self
        decode = self._decode
        out: list[Envelope[Any]] = []
        append = out.append
        for r in records:
            d = r.decoded
            if d is not None and d[0] is me:  # type: ignore[index]
                append(d[1])  # type: ignore[index]
            else:
                env = decode(r.value)
                _set_decoded(r, (me, env))
                append(env)
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
