"""Event ids of records, decoded once per record."""

from __future__ import annotations

from collections.abc import Sequence

from alpha_panda.stream.log import Record


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
            else:
                for k, v in h:
                    if k == "id":
                        eid = v.decode()
                        break
            if eid is not None:
                r.eid = eid
        append(eid)
    return out

