"""Decoding records once per process, however many consumer groups read them.

With the embedded log, every group of the process reads the same records (a tick is read
by the strategy runner, the paper engine and the portfolio). Envelopes are immutable, so
the first group's decode can serve the others: ``SharedDecoder`` keeps the envelopes of
recent records of one log. Embedded logs hand every group the very same ``Record`` objects
(from their partition tails), so records are matched by identity: no key to build, and a
record the cache holds cannot be confused with another.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from alpha_panda.domain.events import Envelope, EventCodec
from alpha_panda.stream.log import Log, Record

Decoder = Callable[[Record], Envelope[Any]]
_Entry = tuple[Record, Envelope[Any]]


class SharedDecoder:
    """Decode with ``codec``, remembering the last ``capacity``..2x``capacity`` envelopes."""

    def __init__(self, codec: EventCodec, capacity: int = 50_000) -> None:
        self._decode = codec.decode
        self._capacity = capacity
        # id(record) -> (record, envelope): holding the record keeps its id from being reused.
        self._young: dict[int, _Entry] = {}
        self._old: dict[int, _Entry] = {}

    def __call__(self, record: Record) -> Envelope[Any]:
        key = id(record)
        entry = self._young.get(key)
        if entry is not None and entry[0] is record:
            return entry[1]
        entry = self._old.get(key)
        if entry is not None and entry[0] is record:
            env = entry[1]
        else:
            env = self._decode(record.value)  # raises DecodeError: nothing is cached
        young = self._young
        young[key] = (record, env)
        if len(young) >= self._capacity:
            self._old = young
            self._young = {}
        return env


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
