"""Event ids of records, decoded once per record; the services a replayed record is for."""

from __future__ import annotations

from collections.abc import Sequence

from alpha_panda.stream.log import Headers, Record

REPLAY_FOR = "replay-for"
"""Header of a record ``alpha-panda dlq replay`` put back: the services (processor names,
comma-separated) whose dead letters it answers, always the record's last header. Only they
handle it. The others handled the original, and once its id has left their deduplication
memory they would handle it a second time: a fill counted twice, an old tick taken for the
latest price."""

_replays = [False]  # set once this process has read a record with REPLAY_FOR


def replays_read() -> bool:
    """Whether this process has read a replayed record (until then no batch looks for one)."""
    return _replays[0]


def not_for(headers: Headers, service: str) -> bool:
    """Whether a record with ``headers`` is a replayed copy for other services than ``service``."""
    if not headers:
        return False
    key, value = headers[-1]
    return key == REPLAY_FOR and service not in value.decode().split(",")


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
                    _replays[0] = True
            else:
                for k, v in h:
                    if k == "id":
                        eid = v.decode()
                    elif k == REPLAY_FOR:
                        _replays[0] = True
            if eid is not None:
                r.eid = eid
        append(eid)
    return out

