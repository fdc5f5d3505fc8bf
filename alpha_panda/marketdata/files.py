"""Tick files: CSV or Parquet, one row per tick, sorted by time (ARCHITECTURE.md).

Columns: ``timestamp`` (int ns since the epoch, UTC, or an ISO-8601 string; naive
times are UTC), ``instrument_token`` (int), ``last_price`` (rupees, e.g. ``2500.05``),
optional ``volume`` and any other ``MarketTick`` field. Prices are converted exactly to
int paise; a price with fractions of a paisa is an error. Errors name the row (1-based
data row; the file line is one more, for the header) and the column.

Columns are read with pyarrow (multi-threaded CSV parser) straight into numpy int64
arrays: ``TickColumns``. The backtest iterates those; the replay feed turns rows into
``MarketTick`` events with ``iter_ticks``, and both name tick ``seq`` by ``tick_id``.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import MarketTick, derive_id
from alpha_panda.marketdata.instruments import BY_TOKEN

I64 = npt.NDArray[np.int64]
REQUIRED: Final = ("timestamp", "instrument_token", "last_price")
PRICE_EXTRAS: Final = ("average_price", "open", "high", "low", "close")
INT_EXTRAS: Final = ("last_quantity", "oi", "buy_quantity", "sell_quantity")
_TYPES: Final[dict[str, pa.DataType]] = {
    "instrument_token": pa.int64(), "last_price": pa.float64(), "volume": pa.int64(),
    **{c: pa.float64() for c in PRICE_EXTRAS}, **{c: pa.int64() for c in INT_EXTRAS},
}


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
    paise); ``nulls`` marks their missing cells.
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


def _fail(path: Path, row: int | None, column: str, message: str) -> ValidationError:
    where = f", row {row + 1} (line {row + 2})" if row is not None else ""
    return ValidationError(f"{path}{where}, column {column!r}: {message}")


def _read_csv(path: Path) -> pa.Table:
    bad: list[str] = []

    def on_bad_row(row: Any) -> str:
        line = f"line {row.number}" if row.number is not None and row.number >= 0 else "a row"
        bad.append(f"{path}: {line}: expected {row.expected_columns} columns, "
                   f"got {row.actual_columns}: {row.text!r}")
        return "skip"

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt") as f:
        header = [c.strip().strip('"') for c in f.readline().strip().split(",")]
    types = {c: t for c, t in _TYPES.items() if c in header}
    try:
        table = pacsv.read_csv(
            path, parse_options=pacsv.ParseOptions(invalid_row_handler=on_bad_row),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    except pa.ArrowInvalid as exc:
        # pyarrow does not say which row: find it the slow way, only on this error path.
        raise _locate_csv_error(path, header, exc) from exc
    if bad:
        raise ValidationError(bad[0])
    return table


def _locate_csv_error(path: Path, header: list[str], exc: Exception) -> ValidationError:
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in header}))
    for column, kind in _TYPES.items():
        if column not in header:
            continue
        for row, text in enumerate(table[column].to_pylist()):
            if text is None or text == "":
                continue
            try:
                float(text) if kind == pa.float64() else int(text)
            except ValueError:
                return _fail(path, row, column, f"not a number: {text!r}")
    return ValidationError(f"{path}: {exc}")


def _timestamps(path: Path, col: pa.ChunkedArray) -> I64:
    kind = col.type
    if pa.types.is_integer(kind):
        return np.asarray(col.cast(pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _iso_timestamps(path, col)
    if pa.types.is_timestamp(kind):
        col = pc.cast(col, pa.timestamp("ns", kind.tz))  # naive times are taken as UTC
        return np.asarray(col.cast(pa.int64()).to_numpy(), dtype=np.int64)
    raise _fail(path, None, "timestamp", f"expected int nanoseconds or ISO-8601, got {kind}")


_ZONED: Final = r"(Z|[+-]\d\d:?\d\d)$"
_UTC_NS: Final = pa.timestamp("ns", "UTC")
_NAIVE_NS: Final = pa.timestamp("ns")


def _iso_timestamps(path: Path, col: pa.ChunkedArray) -> I64:
    """ISO-8601 strings, with a zone (``Z``, ``+05:30``) or without (taken as UTC)."""
    zoned = pc.match_substring_regex(col, _ZONED)
    try:
        with_zone = pc.cast(pc.if_else(zoned, col, "1970-01-01T00:00:00Z"), _UTC_NS)
        without = pc.cast(pc.if_else(zoned, "1970-01-01T00:00:00", col), _NAIVE_NS)
    except pa.ArrowInvalid:
        for row, text in enumerate(col.to_pylist()):
            if not _parses(text):
                raise _fail(path, row, "timestamp",
                            f"not int nanoseconds or ISO-8601: {text!r}") from None
        raise
    mask = zoned.to_numpy(zero_copy_only=False)
    a = with_zone.cast(pa.int64()).to_numpy()
    b = without.cast(pa.int64()).to_numpy()
    out: I64 = np.where(mask, a, b).astype(np.int64)
    return out


def _parses(text: str) -> bool:
    for kind in (_UTC_NS, _NAIVE_NS):
        try:
            pc.cast(pa.array([text]), kind)
            return True
        except pa.ArrowInvalid:
            continue
    return False


def _paise(path: Path, name: str, col: pa.ChunkedArray) -> I64:
    rupees = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    scaled = rupees * 100.0
    paise = np.rint(scaled)
    # Exact for prices with at most two decimals (below ~₹10^11); a third decimal leaves
    # a residue of at least 0.1 paisa, far above float error.
    bad = np.flatnonzero(~(np.abs(scaled - paise) < 1e-3))
    if len(bad):
        row = int(bad[0])
        raise _fail(path, row, name, f"{float(rupees[row])!r} is not a price in whole paise")
    return paise.astype(np.int64)


def _ints(col: pa.ChunkedArray) -> I64:
    return np.asarray(col.cast(pa.int64()).fill_null(0).to_numpy(), dtype=np.int64)


def load_ticks(path: str | Path) -> TickColumns:
    """Read a CSV (``.csv``, ``.csv.gz``) or Parquet tick file into columns."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"{p}: no such tick file")
    name = p.name.lower()
    if name.endswith((".parquet", ".pq")):
        table = pq.read_table(p)
    else:
        table = _read_csv(p)
    if "timestamp" not in table.column_names and "ts" in table.column_names:
        table = table.rename_columns(["timestamp" if c == "ts" else c for c in table.column_names])
    for column in REQUIRED:
        if column not in table.column_names:
            raise _fail(p, None, column, "required column is missing")
        nulls = table[column].null_count
        if nulls:
            row = int(np.flatnonzero(table[column].is_null().to_numpy(zero_copy_only=False))[0])
            raise _fail(p, row, column, "missing value")
    if table.num_rows == 0:
        empty = np.zeros(0, dtype=np.int64)
        return TickColumns(empty, empty.copy(), empty.copy(), empty.copy())
    ts = _timestamps(p, table["timestamp"])
    back = np.flatnonzero(np.diff(ts) < 0)
    if len(back):
        raise _fail(p, int(back[0]) + 1, "timestamp", "ticks must be sorted by time")
    extras: dict[str, I64] = {}
    masks: dict[str, npt.NDArray[np.bool_]] = {}
    for column in (*PRICE_EXTRAS, *INT_EXTRAS):
        if column in table.column_names:
            col = table[column]
            mask = col.is_null().to_numpy(zero_copy_only=False)
            filled = col.fill_null(0)
            extras[column] = _paise(p, column, filled) if column in PRICE_EXTRAS else _ints(filled)
            if mask.any():
                masks[column] = mask
    volume = (_ints(table["volume"]) if "volume" in table.column_names
              else np.zeros(len(ts), dtype=np.int64))
    return TickColumns(
        ts=ts, instrument_token=_ints(table["instrument_token"]),
        last_price=_paise(p, "last_price", table["last_price"]), volume=volume,
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
    lists = {k: v[start:stop].tolist() for k, v in cols.extras.items()}
    masks = {k: v[start:stop].tolist() for k, v in cols.nulls.items()}
    out: list[MarketTick] = []
    for i in range(len(ts)):
        extra: dict[str, Any] = {
            k: None if k in masks and masks[k][i] else lists[k][i] for k in names}
        out.append(MarketTick(instrument_token=tok[i], last_price=px[i], ts=ts[i],
                              volume=vol[i], **extra))
    return out


def write_ticks(path: str | Path, cols: TickColumns) -> None:
    """Write ticks as CSV or Parquet (by extension); prices in rupees, times in int ns."""
    p = Path(path)
    data: dict[str, pa.Array] = {
        "timestamp": pa.array(cols.ts, pa.int64()),
        "instrument_token": pa.array(cols.instrument_token, pa.int64()),
        # paise / 100 as float64 prints and parses back to the same paise (see _paise).
        "last_price": pa.array(cols.last_price / 100.0, pa.float64()),
        "volume": pa.array(cols.volume, pa.int64()),
    }
    for name, values in cols.extras.items():
        mask = cols.nulls.get(name)
        scaled = values / 100.0 if name in PRICE_EXTRAS else values
        data[name] = pa.array(scaled, mask=mask)
    table = pa.table(data)
    if p.name.lower().endswith((".parquet", ".pq")):
        pq.write_table(table, p)
    else:
        pacsv.write_csv(table, p)


def generate_random_walk(
    n_ticks: int, instruments: Sequence[int] | int = 20, seed: int = 0, *,
    start_ns: int = 1_704_080_700_000_000_000,  # 2024-01-01 09:15 IST
) -> TickColumns:
    """A deterministic random walk on the 0.05 grid: each tick picks an instrument at random
    and moves its price by -0.05, 0 or +0.05; times advance 0–2 ms per tick.

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
