"""A tick file's columns read exactly, and the first bad cell named when one is not.

``files.load_ticks`` reads a CSV or Parquet file with pyarrow and hands each column here:
prices become exact int paise, times int ns (UTC; ISO-8601 strings with or without a zone),
the other columns int64, every check vectorized. Only a failing check looks for its first
bad row, so that ``Source.fail`` can name the file, the row (and a CSV file's line) and the
column, and quote the value. Kept apart from ``files``: that module says what a tick file
is and turns columns into events; this one is how a column is read and checked.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from alpha_panda.domain.clock import ist_time
from alpha_panda.domain.errors import ValidationError

I64 = npt.NDArray[np.int64]

REQUIRED: Final = ("timestamp", "instrument_token", "last_price")
PRICE_EXTRAS: Final = ("average_price", "open", "high", "low", "close")
INT_EXTRAS: Final = ("last_quantity", "oi", "buy_quantity", "sell_quantity")
FLAG_EXTRAS: Final = ("tradable",)
"""Yes/no columns (true/false or 1/0), held as int64 1/0 beside the others."""
_TYPES: Final[dict[str, pa.DataType]] = {
    "instrument_token": pa.int64(), "last_price": pa.float64(), "volume": pa.int64(),
    **{c: pa.float64() for c in PRICE_EXTRAS}, **{c: pa.int64() for c in INT_EXTRAS},
    **{c: pa.bool_() for c in FLAG_EXTRAS},
}


@dataclass(frozen=True, slots=True)
class Source:
    """The file being read, to name a bad cell: a CSV row by its data row and file line, a
    Parquet row by its number."""

    path: Path
    csv: bool

    def fail(self, row: int | None, column: str | None, message: str,
             line: int | None = None) -> ValidationError:
        where = ""
        if row is not None:
            where = f", row {row + 1}"
            if self.csv:
                where += f" (line {line if line is not None else _csv_line(self.path, row)})"
        named = f", column {column!r}" if column is not None else ""
        return ValidationError(f"{self.path}{where}{named}: {message}")


def _open_text(path: Path) -> IO[str]:
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    return cast(IO[str], opener(path, "rt", encoding="utf-8-sig", errors="replace", newline=""))


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first file line, fields) of the header and each row after it. Empty lines are
    skipped, as pyarrow skips them, so the n-th row here is row n of the table pyarrow reads."""
    with _open_text(path) as f:
        reader = csv.reader(f)
        start = 1
        for fields in reader:
            if fields:
                yield start, fields
            start = reader.line_num + 1


def _csv_line(path: Path, row: int) -> int:
    """The file line of data row ``row`` (0-based): for error messages only, it reads the
    file up to that row."""
    try:
        for i, (line, _) in enumerate(_csv_rows(path)):
            if i == row + 1:  # row 0 comes after the header
                return line
    except (OSError, csv.Error):
        pass
    return row + 2


def read_csv(src: Source) -> pa.Table:
    try:
        header = next((fields for _, fields in _csv_rows(src.path)), None)
    except (OSError, csv.Error) as exc:
        raise ValidationError(f"{src.path}: not a readable CSV file: {exc}") from exc
    if header is None:
        raise ValidationError(f"{src.path}: no ticks: the file is empty")
    types = {c: t for c, t in _TYPES.items() if c in header}
    try:
        # No invalid_row_handler: the threaded reader would hold that Python callable and
        # drop it from one of its worker threads, sometimes after read_csv has returned;
        # if the interpreter is exiting by then (an error right after the read), taking the
        # GIL in that thread aborts the process ("terminate called without an active
        # exception"). A short row fails the read instead, and is found below.
        return pacsv.read_csv(src.path, convert_options=pacsv.ConvertOptions(column_types=types))
    except (pa.ArrowException, OSError) as exc:
        # pyarrow does not say which row: find it the slow way, only on this error path.
        raise _locate_csv_error(src, header, exc) from exc


def _locate_csv_error(src: Source, header: list[str], exc: Exception) -> ValidationError:
    """The first row pyarrow could not read: too few or too many fields, or a typed column's
    value that does not parse."""
    typed = {c: header.index(c) for c in _TYPES if c in header}
    cells: dict[str, list[str]] = {c: [] for c in typed}
    lines: list[int] = []
    odd: tuple[int, list[str]] | None = None
    try:
        for line, fields in itertools.islice(_csv_rows(src.path), 1, None):
            if len(fields) != len(header):
                odd = (line, fields)
                break
            lines.append(line)
            for c, i in typed.items():
                cells[c].append(fields[i])
    except (OSError, csv.Error) as err:
        return ValidationError(f"{src.path}: not a readable CSV file: {err}")
    bad = [(row, c) for c, texts in cells.items()
           if (row := _first_unparsable(texts, _TYPES[c])) is not None]
    if bad:
        row, column = min(bad)
        text = cells[column][row]
        return src.fail(row, column, f"{_not_a(text, _TYPES[column])}: {text!r}", lines[row])
    if odd is not None:
        line, fields = odd
        n, want = len(fields), len(header)
        missing = header[n] if n < want else None
        return src.fail(len(lines), missing, f"expected {want} columns, got {n}: "
                        f"{','.join(fields)!r}", line)
    return ValidationError(f"{src.path}: {exc}")


_NULLS: Final = frozenset(pacsv.ConvertOptions().null_values)


def _first_unparsable(texts: list[str], kind: pa.DataType) -> int | None:
    # pyarrow's CSV reader trims spaces around numbers and reads its null spellings as null.
    stripped = [t.strip() for t in texts]
    arr = pa.array([None if t in _NULLS else t for t in stripped], pa.string())
    return _first_failure(len(arr), lambda lo, hi: _casts(arr.slice(lo, hi - lo), kind))


def _not_a(value: object, kind: pa.DataType) -> str:
    text = str(value).strip()
    if pa.types.is_boolean(kind):
        return "not true or false"
    if pa.types.is_integer(kind) and text.lstrip("-").isdigit():
        return "out of range"
    if pa.types.is_integer(kind) and _casts(pa.array([text]), pa.float64()):
        return "not a whole number"
    return "not a number"


def _casts(arr: pa.Array | pa.ChunkedArray, kind: pa.DataType) -> bool:
    try:
        arr.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _first_failure(n: int, ok: Callable[[int, int], bool]) -> int | None:
    """The first of rows ``0..n`` that fails ``ok(lo, hi)``, a vectorized check of rows
    ``lo..hi`` passing only if each row does: a binary search, for error paths."""
    if ok(0, n):
        return None
    lo, hi = 0, n  # rows lo..hi hold a failure, rows before lo none
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(lo, mid):
            lo = mid
        else:
            hi = mid
    return lo


def _cast(src: Source, name: str, col: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    """``col`` as ``kind``; a value that does not convert is named with its row."""
    if col.type == kind:
        return col
    try:
        return col.cast(kind)
    except pa.ArrowInvalid as exc:
        row = _first_failure(len(col), lambda lo, hi: _casts(col.slice(lo, hi - lo), kind))
        if row is None:
            raise src.fail(None, name, str(exc)) from exc
        value = col[row].as_py()
        raise src.fail(row, name, f"{_not_a(value, kind)}: {value!r}") from None
    except pa.ArrowException:
        raise src.fail(None, name, f"expected {kind} values, got {col.type}") from None


def timestamps(src: Source, col: pa.ChunkedArray) -> I64:
    kind = col.type
    if pa.types.is_integer(kind):
        ns = np.asarray(_cast(src, "timestamp", col, pa.int64()).to_numpy(), dtype=np.int64)
        return _in_nanoseconds(src, ns)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _iso_timestamps(src, col)
    if pa.types.is_timestamp(kind):
        # naive times are the exchange's, IST
        col = _cast(src, "timestamp", col, pa.timestamp("ns", kind.tz))
        ns = np.asarray(col.cast(pa.int64()).to_numpy(), dtype=np.int64)
        return ns if kind.tz else ns - _IST_OFFSET_NS
    raise src.fail(None, "timestamp", f"expected int nanoseconds or ISO-8601, got {kind}")


_ZONED: Final = r"(Z|[+-]\d\d:?\d\d)$"
_DIGITS: Final = r"^\d+$"
_UTC_NS: Final = pa.timestamp("ns", "UTC")
_NAIVE_NS: Final = pa.timestamp("ns")
# A time without a zone is IST, as the exchange's clock, Kite's and Indian vendors' files
# state it (read as UTC, a day of 09:15 ticks traded at 14:45 IST); IST has no DST.
_IST_OFFSET_NS: Final = 19_800 * 1_000_000_000


def _iso_timestamps(src: Source, col: pa.ChunkedArray) -> I64:
    """ISO-8601 strings, with a zone (``Z``, ``+05:30``) or without (IST, the exchange's
    time); rows of int nanoseconds among them are read as such."""
    try:
        return _parse_times(col, ints=False)
    except pa.ArrowInvalid:
        pass
    try:
        out = _parse_times(col, ints=True)
    except pa.ArrowInvalid as exc:
        row = _first_failure(len(col), lambda lo, hi: _times_parse(col.slice(lo, hi - lo)))
        if row is None:
            raise src.fail(None, "timestamp", str(exc)) from exc
        text = col[row].as_py()
        raise src.fail(row, "timestamp", f"not int nanoseconds or ISO-8601: {text!r}") from None
    digits = pc.match_substring_regex(col, _DIGITS).to_numpy(zero_copy_only=False)
    return _in_nanoseconds(src, out, digits)


# An int time that is one of 1990-2099 in seconds, milliseconds or microseconds is in that
# unit, not in nanoseconds (then 1970): NSE's ticks are from 1994 on. Other ints are taken
# as nanoseconds (tests and synthetic files count from 0).
_YEARS_S: Final = (631_152_000, 4_102_444_800)  # 1990-01-01, 2100-01-01 (UTC), seconds
_UNITS: Final = ((10**9, "seconds"), (10**6, "milliseconds"), (10**3, "microseconds"))


def _in_nanoseconds(src: Source, ns: I64, ints: npt.NDArray[np.bool_] | None = None) -> I64:
    """``ns`` (of which the rows ``ints`` were written as ints); an int that is a time of
    1990-2099 in seconds, milliseconds or microseconds is an error: read as nanoseconds, a
    session's ticks were the first seconds of 1970."""
    lo, hi = _YEARS_S
    wrong = np.zeros(len(ns), dtype=np.bool_)
    for scale, _ in _UNITS:
        per = 10**9 // scale  # the unit's steps in a second
        wrong |= (ns >= lo * per) & (ns < hi * per)
    if ints is not None:
        wrong &= ints
    if not wrong.any():
        return ns
    row = int(np.argmax(wrong))
    value = int(ns[row])
    scale, unit = next((s, u) for s, u in _UNITS if lo <= value * s // 10**9 < hi)
    raise src.fail(row, "timestamp", (
        f"{value} is not in nanoseconds since the epoch (it would be {ist_time(value)}); in "
        f"{unit} it is {ist_time(value * scale)}: write int timestamps in nanoseconds, or "
        "ISO-8601"))


def _parse_times(col: pa.ChunkedArray, ints: bool) -> I64:
    zoned = pc.match_substring_regex(col, _ZONED)
    digits = pc.match_substring_regex(col, _DIGITS) if ints else pa.scalar(False)
    with_zone = pc.cast(pc.if_else(zoned, col, "1970-01-01T00:00:00Z"), _UTC_NS)
    without = pc.cast(pc.if_else(pc.or_(zoned, digits), "1970-01-01T00:00:00", col), _NAIVE_NS)
    out: I64 = np.where(zoned.to_numpy(zero_copy_only=False),
                        with_zone.cast(pa.int64()).to_numpy(),
                        without.cast(pa.int64()).to_numpy() - _IST_OFFSET_NS).astype(np.int64)
    if ints:
        ns = pc.cast(pc.if_else(digits, col, "0"), pa.int64()).to_numpy()
        out = np.where(digits.to_numpy(zero_copy_only=False), ns, out)
    return out


def _times_parse(col: pa.ChunkedArray) -> bool:
    try:
        _parse_times(col, ints=True)
    except pa.ArrowInvalid:
        return False
    return True


_MAX_PAISE: Final = 2.0**53  # float64 holds every whole number of paise below this


def paise(src: Source, name: str, col: pa.ChunkedArray, *, positive: bool) -> I64:
    """Rupees to exact int paise. ``last_price`` must be positive; other prices (Kite sends
    0 for an open or average price not known yet) must not be negative."""
    rupees = np.asarray(_cast(src, name, col, pa.float64()).fill_null(0)
                        .to_numpy(zero_copy_only=False), dtype=np.float64)
    scaled = rupees * 100.0
    paise = np.rint(scaled)
    # Exact for prices with at most two decimals (below ~₹10^11); a third decimal leaves
    # a residue of at least 0.1 paisa, far above float error. NaN fails every comparison.
    # A float32 column (some writers' default) holds 2500.05 as 2500.050048828125: up to
    # half a step of its 24-bit mantissa off, which is under half a paisa below 2^23 paise
    # (₹83,886); past that it cannot tell one paisa from the next: an error, not a guess.
    tolerance: float | np.ndarray = 1e-3
    if pa.types.is_floating(col.type) and col.type.bit_width < 64:
        mantissa = 23 if col.type.bit_width == 32 else 10
        coarse = np.abs(scaled) >= 2.0 ** mantissa
        if coarse.any():
            row = int(np.argmax(coarse))
            raise src.fail(row, name, f"{float(rupees[row])!r} in a float{col.type.bit_width} "
                           "column: too coarse for whole paise at this price (write it as "
                           "float64)")
        tolerance = np.abs(scaled) * 2.0 ** -(mantissa + 1) + 1e-3
    with np.errstate(invalid="ignore"):  # inf - inf
        ok = (np.abs(scaled - paise) < tolerance) & (scaled < _MAX_PAISE)
    ok &= (rupees > 0) if positive else (rupees >= 0)
    if not ok.all():
        row = int(np.argmin(ok))
        raise src.fail(row, name, _price_problem(float(rupees[row]), positive))
    return paise.astype(np.int64)


def _price_problem(rupees: float, positive: bool) -> str:
    if not math.isfinite(rupees):
        return f"not a price: {rupees!r}"
    if rupees < 0 or (positive and rupees == 0):
        return f"{rupees!r} is not a positive price" if positive else f"{rupees!r} is negative"
    if rupees * 100.0 >= _MAX_PAISE:
        return f"{rupees!r} is too large for a price"
    return f"{rupees!r} is not a price in whole paise"


def ints(src: Source, name: str, col: pa.ChunkedArray, *, least: int = 0) -> I64:
    """Whole numbers, nulls as 0; none below ``least`` (volumes and quantities: 0)."""
    values = np.asarray(_cast(src, name, col, pa.int64()).fill_null(0).to_numpy(),
                        dtype=np.int64)
    low = values < least
    if low.any():
        row = int(np.argmax(low))
        what = "negative" if least == 0 else f"below {least}"
        raise src.fail(row, name, f"{int(values[row])} is {what}")
    return values


def flags(src: Source, name: str, col: pa.ChunkedArray) -> I64:
    """true/false (or 1/0) as 1/0; a missing cell is 1, a ``MarketTick``'s default."""
    values = _cast(src, name, col, pa.bool_()).fill_null(True).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.int64)


def read_parquet(src: Source) -> pa.Table:
    try:
        return pq.read_table(src.path)
    except (pa.ArrowException, OSError) as exc:
        raise ValidationError(f"{src.path}: not a readable Parquet file: {exc}") from exc
