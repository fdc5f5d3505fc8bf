"""Tick files: CSV or Parquet, one row per tick, sorted by time (ARCHITECTURE.md).

Columns: ``timestamp`` (int ns since the epoch, UTC, or an ISO-8601 string; naive
times are IST; an int in seconds, milliseconds or microseconds is an error),
``instrument_token`` (int), ``last_price`` (rupees, e.g. ``2500.05``),
optional ``volume`` and any other ``MarketTick`` field. Prices are converted exactly to
int paise; a price with fractions of a paisa is an error, and so is a ``last_price`` that
is not positive or a negative volume or quantity. Prices off the 0.05 grid are read as
they are: tick sizes differ by instrument and exchange. A file without ticks is an error.
Errors name the file, the row (1-based data row; for CSV also the file line, the header
being line 1) and the column, and quote the bad value.

Columns are read with pyarrow (multi-threaded CSV parser) straight into numpy int64
arrays: ``TickColumns``. Checks are vectorized; only a failing one looks for its first
bad row (``marketdata.columns``). The backtest iterates the columns; the replay feed turns rows into
``MarketTick`` events with ``iter_ticks``, and both name tick ``seq`` by ``tick_id``.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import MarketTick, derive_id
from alpha_panda.marketdata.columns import (
    FLAG_EXTRAS,
    I64,
    INT_EXTRAS,
    PRICE_EXTRAS,
    REQUIRED,
    Source,
    flags,
    ints,
    paise,
    read_csv,
    read_parquet,
    timestamps,
)
from alpha_panda.marketdata.instruments import BY_TOKEN


@functools.lru_cache(maxsize=1024)
def tick_id_prefix(source: str) -> str:
    """What every tick id of ``source`` starts with: 16 hex digits of a hash of the source
    name and a dash. ``tick_id(source, seq) == tick_id_prefix(source) + str(seq)``."""
    return derive_id(f"ticks:{source}", "tick")[:16] + "-"


def tick_id(source: str, seq: int) -> str:
    """Envelope id of the ``seq``-th tick (0-based row) of a tick source: deterministic,
    unique per (source, seq), and cheap (a feed names 100k ticks a second; a hash each
    would cost a tenth of the pipeline's time per tick)."""
    return f"{tick_id_prefix(source)}{seq}"


def tick_source(path: str | Path) -> str:
    """The source name of a tick file, independent of the directory it is read from."""
    return f"replay:{Path(path).name}"


@dataclass(frozen=True, slots=True)
class TickColumns:
    """Ticks as parallel numpy columns. Prices in paise, times in ns; all int64.

    ``extras`` holds other MarketTick columns present in the file (int64, prices in
    paise, ``tradable`` 1/0); ``nulls`` marks their missing cells.
    """

    ts: I64
    instrument_token: I64
    last_price: I64
    volume: I64
    extras: dict[str, I64] = field(default_factory=dict)
    nulls: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, start: int, stop: int) -> TickColumns:
        return TickColumns(
            self.ts[start:stop], self.instrument_token[start:stop], self.last_price[start:stop],
            self.volume[start:stop], {k: v[start:stop] for k, v in self.extras.items()},
            {k: v[start:stop] for k, v in self.nulls.items()},
        )



def load_ticks(path: str | Path) -> TickColumns:
    """Read a CSV (``.csv``, ``.csv.gz``) or Parquet tick file into columns.

    Raises ``ValidationError`` naming the file, the row (and a CSV file's line) and the
    column of the first bad value; a file without ticks is an error too.
    """
    p = Path(path)
    if p.is_dir():  # (a Parquet dataset's directory, say: "no such tick file" of one there)
        raise ValidationError(f"{p}: a directory, not a tick file (a .csv, .csv.gz or "
                              ".parquet file)")
    if not p.is_file():
        raise ValidationError(f"{p}: no such tick file")
    if p.stat().st_size == 0:
        raise ValidationError(f"{p}: no ticks: the file is empty")
    src = Source(p, csv=not p.name.lower().endswith((".parquet", ".pq")))
    table = read_csv(src) if src.csv else read_parquet(src)
    if "timestamp" not in table.column_names and "ts" in table.column_names:
        table = table.rename_columns(["timestamp" if c == "ts" else c for c in table.column_names])
    names = table.column_names
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise src.fail(None, twice[0], "the column appears more than once")
    for column in REQUIRED:
        if column not in names:
            *first, last = REQUIRED
            raise src.fail(None, column, (
                f"required column is missing (the file has {', '.join(names)}; a tick file "
                f"needs {', '.join(first)} and {last})"))
    if table.num_rows == 0:
        rows = "a header but no rows" if src.csv else "no rows"
        raise ValidationError(f"{p}: no ticks: the file has {rows}")
    for column in REQUIRED:
        if table[column].null_count:
            row = int(np.flatnonzero(table[column].is_null().to_numpy(zero_copy_only=False))[0])
            raise src.fail(row, column, "missing value")
    ts = timestamps(src, table["timestamp"])
    back = np.flatnonzero(np.diff(ts) < 0)
    if len(back):
        raise src.fail(int(back[0]) + 1, "timestamp", "ticks must be sorted by time")
    extras: dict[str, I64] = {}
    masks: dict[str, npt.NDArray[np.bool_]] = {}
    for column in (*PRICE_EXTRAS, *INT_EXTRAS, *FLAG_EXTRAS):
        if column in names:
            col = table[column]
            mask = col.is_null().to_numpy(zero_copy_only=False)
            extras[column] = (paise(src, column, col, positive=False) if column in PRICE_EXTRAS
                              else flags(src, column, col) if column in FLAG_EXTRAS
                              else ints(src, column, col))
            # ``last_quantity`` is an int on a MarketTick (0: not known), ``tradable`` a
            # bool (missing: tradable), the others may be None: a null one decoded as a
            # malformed tick off the log, dead-lettered
            if mask.any() and column != "last_quantity" and column not in FLAG_EXTRAS:
                masks[column] = mask
    volume = (ints(src, "volume", table["volume"]) if "volume" in names
              else np.zeros(len(ts), dtype=np.int64))
    return TickColumns(
        ts=ts, instrument_token=ints(src, "instrument_token", table["instrument_token"], least=1),
        last_price=paise(src, "last_price", table["last_price"], positive=True), volume=volume,
        extras=extras, nulls=masks,
    )


def iter_ticks(cols: TickColumns, start: int = 0) -> Iterator[MarketTick]:
    """The rows as ``MarketTick`` events (row ``i`` is tick ``seq == i``)."""
    for lo in range(start, len(cols), 10_000):
        yield from tick_rows(cols, lo, lo + 10_000)


def tick_rows(cols: TickColumns, start: int, stop: int) -> list[MarketTick]:
    """Rows ``start`` to ``stop`` as ``MarketTick`` events: a feed converts its file a
    batch at a time, so a long file costs memory for its columns only."""
    ts, tok, px, vol = (a[start:stop].tolist() for a in (
        cols.ts, cols.instrument_token, cols.last_price, cols.volume))
    if not cols.extras:  # the common case, without a dict per row
        return [MarketTick(instrument_token=t, last_price=p, ts=s, volume=v)
                for s, t, p, v in zip(ts, tok, px, vol, strict=True)]
    names = list(cols.extras)
    lists = {k: (v[start:stop].astype(bool) if k in FLAG_EXTRAS else v[start:stop]).tolist()
             for k, v in cols.extras.items()}
    masks = {k: v[start:stop].tolist() for k, v in cols.nulls.items()}
    out: list[MarketTick] = []
    for i in range(len(ts)):
        extra: dict[str, Any] = {
            k: None if k in masks and masks[k][i] else lists[k][i] for k in names}
        out.append(MarketTick(instrument_token=tok[i], last_price=px[i], ts=ts[i],
                              volume=vol[i], **extra))
    return out


def write_ticks(path: str | Path, cols: TickColumns) -> None:
    """Write ticks as CSV (gzipped for ``.csv.gz``) or Parquet, by extension; prices in
    rupees, times in int ns."""
    p = Path(path)
    data: dict[str, pa.Array] = {
        "timestamp": pa.array(cols.ts, pa.int64()),
        "instrument_token": pa.array(cols.instrument_token, pa.int64()),
        # paise / 100 as float64 prints and parses back to the same paise (see paise).
        "last_price": pa.array(cols.last_price / 100.0, pa.float64()),
        "volume": pa.array(cols.volume, pa.int64()),
    }
    for name, values in cols.extras.items():
        mask = cols.nulls.get(name)
        scaled = (values / 100.0 if name in PRICE_EXTRAS
                  else values.astype(bool) if name in FLAG_EXTRAS else values)
        data[name] = pa.array(scaled, mask=mask)
    table = pa.table(data)
    name = p.name.lower()
    if not name.endswith((".parquet", ".pq", ".csv.gz", ".csv")):
        raise ValidationError(f"{p}: a tick file is .csv, .csv.gz, .parquet or .pq")
    # Written beside it, then renamed over it: a write that fails part way (a full disk,
    # Ctrl-C) left the first megabytes of a CSV as the file, where a file of that name
    # was before, and a CSV cut at a row's end reads as a shorter day.
    if not p.parent.is_dir():  # (else the error named the hidden file written beside it)
        raise FileNotFoundError(errno.ENOENT, f"directory {p.parent} does not exist")
    part = p.with_name(f".{p.name}.partial")
    try:
        if name.endswith((".parquet", ".pq")):
            pq.write_table(table, part)
        elif name.endswith(".csv.gz"):
            with pa.CompressedOutputStream(str(part), "gzip") as out:
                pacsv.write_csv(table, out)
        else:
            pacsv.write_csv(table, part)
        part.replace(p)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def generate_random_walk(
    n_ticks: int, instruments: Sequence[int] | int = 20, seed: int = 0, *,
    start_ns: int = 1_704_080_700_000_000_000,  # 2024-01-01 09:15 IST
) -> TickColumns:
    """A deterministic random walk on the 0.05 grid: each tick picks an instrument at random
    and moves its price by -0.05, 0 or +0.05; times advance 0–2 ms per tick. The 0.05 grid
    was NSE's for every price until June 2024: keep ``start_ns`` before then, or limit
    prices taken from these ticks may be off a later day's grid.

    ``instruments`` is a list of tokens (start prices from the simulator's list, else
    ₹1,000) or a count (the simulator's instruments first, then tokens 1, 2, ...).
    """
    if isinstance(instruments, int):
        sim = list(BY_TOKEN)
        tokens = sim[:instruments] + list(range(1, 1 + max(0, instruments - len(sim))))
    else:
        tokens = list(instruments)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(tokens), n_ticks)
    steps = rng.integers(-1, 2, n_ticks, dtype=np.int64) * 5
    prices = np.empty(n_ticks, dtype=np.int64)
    for k, token in enumerate(tokens):
        idx = np.flatnonzero(which == k)
        start = BY_TOKEN[token].start_price if token in BY_TOKEN else 1_000_00
        prices[idx] = np.maximum(start + np.cumsum(steps[idx]), 5)
    ts = start_ns + np.cumsum(rng.integers(0, 2_000_001, n_ticks, dtype=np.int64))
    return TickColumns(
        ts=ts, instrument_token=np.asarray(tokens, dtype=np.int64)[which], last_price=prices,
        volume=rng.integers(1, 501, n_ticks, dtype=np.int64),
    )
