"""Event ids of records, decoded once per record; the services a replayed record is for."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

from alpha_panda.stream.log import Headers, Record, TopicPartition

REPLAY_FOR = "replay-for"
"""Header of a record ``alpha-panda dlq replay`` put back: the services (processor names,
comma-separated) whose dead letters it answers, always the record's last header. Only they
handle it. The others handled the original, and once its id has left their deduplication
memory they would handle it a second time: a fill counted twice, an old tick taken for the
latest price."""

COPIES: dict[TopicPartition, list[int]] = {}
"""The places (offsets, ascending) of the replayed copies this process has read, noted by
``record_ids`` as it reads their headers: a batch looks only there, so the records around
them cost nothing (a place is a hint: the record found there is checked, another log of
the process may have a record of its own at it)."""


def not_for(headers: Headers, service: str) -> bool:
    """Whether a record with ``headers`` is a replayed copy for other services than ``service``."""
    if not headers:
        return False
    key, value = headers[-1]
    return key == REPLAY_FOR and service not in value.decode().split(",")


def _note_copy(r: Record) -> None:
    places = COPIES.get(r.tp)
    if places is None:
        COPIES[r.tp] = [r.offset]
    elif places[-1] < r.offset:
        places.append(r.offset)
    elif places[bisect_left(places, r.offset)] != r.offset:  # (read again: noted already)
        insort(places, r.offset)


def _offset(r: Record) -> int:
    return r.offset


def copies_for_others(tp: TopicPartition, run: Sequence[Record], service: str
                      ) -> set[int] | None:
    """The offsets of the replayed copies for services other than ``service`` in ``run``
    (records of ``tp``, offsets ascending, through ``record_ids``), or None: a lookup per
    run, and one per copy noted in it."""
    places = COPIES.get(tp)
    if not places:
        return None
    last = run[-1].offset
    i = bisect_left(places, run[0].offset)
    out: set[int] | None = None
    while i < len(places) and places[i] <= last:
        off = places[i]
        i += 1
        k = bisect_left(run, off, key=_offset)
        if k < len(run) and run[k].offset == off and not_for(run[k].headers, service):
            if out is None:
                out = set()
            out.add(off)
    return out


def record_ids(records: Sequence[Record]) -> list[str | None]:
    """The event id of each record (its ``id`` header), cached on the record: with the
    embedded logs every group reads the same ``Record`` objects, so the header is decoded,
    and the string hashed for dedup, once per record instead of once per group."""
    out = [r.eid for r in records]  # the common case: all known already
    if None not in out:
        return out
    out.clear()
    append = out.append
    for r in records:
        eid = r.eid
        if eid is None:
            h = r.headers
            if h and h[0][0] == "id":  # the standard headers put the id first
                eid = h[0][1].decode()
                if h[-1][0] == REPLAY_FOR:
                    _note_copy(r)
            else:
                for k, v in h:
                    if k == "id":
                        eid = v.decode()
                if h and h[-1][0] == REPLAY_FOR:
                    _note_copy(r)
            if eid is not None:
                r.eid = eid
        append(eid)
    return out

