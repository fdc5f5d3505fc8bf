"""Fast construction of ``Record``s (one per appended record) and ``Output``s (one per tick)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from alpha_panda.stream.log import Headers, Output, Record

_FIELDS = ("topic", "partition", "offset", "key", "value", "headers", "timestamp_ms", "decoded",
           "eid")


def _record_factory() -> Callable[[str, int, int, bytes | None, bytes, Headers, int], Record]:
    # (``make(..., eid=None)``: the id header as text, when the caller already has it.)
    """A ``Record`` constructor twice as fast as the frozen dataclass ``__init__``.

    It fills the slots directly (what ``__init__`` does through ``object.__setattr__``);
    if ``Record``'s fields ever change it falls back to the class itself.
    """
    if tuple(f.name for f in dataclasses.fields(Record)) != _FIELDS:
        return Record
    new = object.__new__
    setters = [getattr(Record, name).__set__ for name in _FIELDS]
    s_topic, s_part, s_off, s_key, s_value, s_headers, s_ts, s_decoded, s_eid = setters

    def make(topic: str, partition: int, offset: int, key: bytes | None, value: bytes,
             headers: Headers, ts: int, eid: str | None = None) -> Record:
        r: Record = new(Record)
        s_topic(r, topic)
        s_part(r, partition)
        s_off(r, offset)
        s_key(r, key)
        s_value(r, value)
        s_headers(r, headers)
        s_ts(r, ts)
        s_decoded(r, None)
        s_eid(r, eid)
        return r

    return make


make_record = _record_factory()
_set_eid = Record.eid.__set__  # type: ignore[misc,union-attr]  # the slot setter


def record_ids(records: Sequence[Record]) -> list[str | None]:
    """The event id of each record (its ``id`` header), cached on the record: with the
    embedded logs every group reads the same ``Record`` objects, so the header is decoded,
    and the string hashed for dedup, once per record instead of once per group."""
    out: list[str | None] = []
    append = out.append
    for r in records:
        eid = r.eid
        if eid is None:
            h = r.headers
            if h and h[0][0] == "id":  # the standard headers put the id first
                eid = h[0][1].decode()
            else:
                for k, v in h:
                    if k == "id":
                        eid = v.decode()
                        break
            if eid is not None:
                _set_eid(r, eid)
        append(eid)
    return out


_OUTPUT_FIELDS = ("topic", "key", "value", "headers", "partition")


def _output_factory() -> Callable[[str, bytes | None, bytes, Headers, int | None], Output]:
    """An ``Output`` constructor, as ``_record_factory`` (a feed builds one per tick)."""
    if tuple(f.name for f in dataclasses.fields(Output)) != _OUTPUT_FIELDS:
        return Output
    new = object.__new__
    s_topic, s_key, s_value, s_headers, s_part = [
        getattr(Output, name).__set__ for name in _OUTPUT_FIELDS]

    def make(topic: str, key: bytes | None, value: bytes, headers: Headers,
             partition: int | None) -> Output:
        o: Output = new(Output)
        s_topic(o, topic)
        s_key(o, key)
        s_value(o, value)
        s_headers(o, headers)
        s_part(o, partition)
        return o

    return make


make_output = _output_factory()
