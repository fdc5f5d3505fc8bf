"""Decoding records once per process, however many consumer groups read them.

With the embedded log, every group of the process reads the same records (a tick is read
by the strategy runner, the paper engine and the portfolio). Envelopes are immutable, so
the first group's decode can serve the others: ``SharedDecoder`` keeps the envelopes of
recent positions ``(topic, partition, offset)`` of one log, which never change content.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from alpha_panda.domain.events import Envelope, EventCodec
from alpha_panda.stream.log import Log, Record

Decoder = Callable[[Record], Envelope[Any]]
_Key = tuple[str, int, int]


class SharedDecoder:
    """Decode with ``codec``, remembering the last ``capacity``..2x``capacity`` envelopes."""

    def __init__(self, codec: EventCodec, capacity: int = 50_000) -> None:
        self._decode = codec.decode
        self._capacity = capacity
        self._young: dict[_Key, Envelope[Any]] = {}
        self._old: dict[_Key, Envelope[Any]] = {}

    def __call__(self, record: Record) -> Envelope[Any]:
        key = (record.topic, record.partition, record.offset)
        env = self._young.get(key)
        if env is not None:
            return env
        env = self._old.get(key)
        if env is None:
            env = self._decode(record.value)  # raises DecodeError: nothing is cached
        young = self._young
        young[key] = env
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
