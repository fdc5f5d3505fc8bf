"""zstd dictionaries for the SQLite log's small segments.

A live feed appends a few ticks at a time, so most segments hold one or two records of
a few hundred bytes: too small for zstd to find repeats in (plain zstd shrank them 1.4-fold),
so they were stored raw, about 410 bytes a tick: 7 GB a day of ``market.ticks`` at the
simulator's default 200 ticks/s. A dictionary trained on the pipeline's own events (the
envelope's field names, the topics' keys, the shape of ticks, signals, orders, fills and
snapshots) shrinks them 5 to 6-fold.

The dictionaries ship with the package, one file per dictionary id, and an id's bytes
never change: every zstd frame names the dictionary it needs, so a log written with an
older one still reads after a new one is added (``scripts/train_segment_dictionary.py``
trains the next one; new segments use the highest id). A version older than a log's
dictionary cannot read the segments compressed with it.

``41500001`` was trained on segments under 1 KiB with Kite packets of 1-3 ticks; one
trained by the script as it is now (up to 16 KiB, packets of up to 30) compressed alike:
a simulator tick 382 -> 71 bytes, one Kite full-mode tick 670 -> 204-206, four 2,677 ->
614-616, twelve 8,031 -> 1,652-1,663 (plain zstd: 293, 527, 1,131, 2,610).
"""

from __future__ import annotations

import functools
from importlib import resources

import zstandard

from alpha_panda.domain.errors import ConfigurationError

_PACKAGE_DIR = ("data", "zstd")
_PREFIX, _SUFFIX = "segments-", ".zdict"


def file_name(dict_id: int) -> str:
    return f"{_PREFIX}{dict_id:08x}{_SUFFIX}"


@functools.cache
def dictionaries() -> dict[int, zstandard.ZstdCompressionDict]:
    """Every shipped dictionary, by its zstd dictionary id (read once per process)."""
    found: dict[int, zstandard.ZstdCompressionDict] = {}
    folder = resources.files("alpha_panda").joinpath(*_PACKAGE_DIR)
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        name = entry.name
        if not (name.startswith(_PREFIX) and name.endswith(_SUFFIX)):
            continue
        d = zstandard.ZstdCompressionDict(entry.read_bytes())
        if file_name(d.dict_id()) != name:
            raise ConfigurationError(f"zstd dictionary {name} holds id {d.dict_id():08x}")
        found[d.dict_id()] = d
    return found


def current() -> zstandard.ZstdCompressionDict | None:
    """The dictionary new segments are compressed with: the highest id (None: none ship)."""
    known = dictionaries()
    return known[max(known)] if known else None
