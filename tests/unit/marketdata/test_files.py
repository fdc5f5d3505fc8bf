from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.clock import ist_time
from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import CODEC, Envelope, MarketTick
from alpha_panda.marketdata.files import (
    TickColumns,
    generate_random_walk,
    iter_ticks,
    load_ticks,
    tick_id,
    tick_source,
    write_ticks,
)


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def test_csv_with_iso_times_and_rupee_prices(tmp_path: Path) -> None:
    f = write(tmp_path, "timestamp,instrument_token,last_price,volume,open\n"
              "2024-01-01T09:15:00+05:30,341249,2500.05,3,2499.5\n"
              "2024-01-01T03:45:00.000000001Z,341249,0.05,7,\n"
              "2024-01-01T09:15:01,408065,1234,1,1200.10\n")  # (no zone: IST)
    cols = load_ticks(f)
    assert cols.ts.tolist() == [1704080700_000000000, 1704080700_000000001, 1704080701_000000000]
    assert cols.last_price.tolist() == [250005, 5, 123400]
    assert cols.volume.tolist() == [3, 7, 1]
    ticks = list(iter_ticks(cols))
    assert ticks[0] == MarketTick(instrument_token=341249, last_price=250005,
                                  ts=1704080700_000000000, volume=3, open=249950)
    assert ticks[1].open is None and ticks[2].open == 120010


def test_times_without_a_zone_are_ist_the_exchanges_time(tmp_path: Path) -> None:
    # An Indian vendor's (or Kite's) naive times are IST. Read as UTC, a file of
    # 09:15-15:05 ticks traded 14:45-20:35 IST: an MIS strategy's entry at the file's 09:15
    # was reported at 14:45:28, its exit_at and the 15:20 square-off came 5.5 hours early.
    import datetime

    import pyarrow as pa

    open_ns = 1775447100_000000000  # 2026-04-06 09:15 IST
    f = write(tmp_path, "timestamp,instrument_token,last_price\n"
              "2026-04-06 09:15:00,1,10\n2026-04-06T15:29:59.5,1,10\n"
              "2026-04-06T10:00:00Z,1,10\n")  # (a zone says which)
    assert load_ticks(f).ts.tolist() == [open_ns, open_ns + 22499_500_000_000,
                                         open_ns + 22500 * 10**9]
    naive = datetime.datetime(2026, 4, 6, 9, 15)  # a Parquet timestamp column without a zone
    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.table({"timestamp": pa.array([naive], pa.timestamp("us")),
                             "instrument_token": [1], "last_price": [10.0]}), parquet)
    assert load_ticks(parquet).ts.tolist() == [open_ns]
    utc = pa.array([naive], pa.timestamp("us", "UTC"))  # one with a zone keeps it
    pq.write_table(pa.table({"timestamp": utc, "instrument_token": [1], "last_price": [10.0]}),
                   parquet)
    assert load_ticks(parquet).ts.tolist() == [open_ns + 19800 * 10**9]


def test_int_nanosecond_timestamps_and_no_volume(tmp_path: Path) -> None:
    cols = load_ticks(write(tmp_path, "timestamp,instrument_token,last_price\n5,1,10.1\n5,2,9\n"))
    assert cols.ts.tolist() == [5, 5] and cols.volume.tolist() == [0, 0]
    assert cols.last_price.tolist() == [1010, 900]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("1,1,10\n2,x,10\n", "row 2 (line 3), column 'instrument_token': not a number: 'x'"),
        ("1,1,10\n2,1,ten\n", "row 2 (line 3), column 'last_price': not a number: 'ten'"),
        ("1,1,10\n2,1,10.005\n", "row 2 (line 3), column 'last_price': 10.005 is not a price"),
        ("1,1,10\n2,1,\n", "row 2 (line 3), column 'last_price': missing value"),
        ("5,1,10\n4,1,10\n", "row 2 (line 3), column 'timestamp': ticks must be sorted"),
        ("2024-01-01T00:00:00,1,10\nyesterday,1,10\n", "row 2 (line 3), column 'timestamp': not int"),
        ("1,1,10\n2,1\n", "row 2 (line 3), column 'last_price': expected 3 columns, got 2: '2,1'"),
        ("1,1,10\n2,1,10,9\n", "row 2 (line 3): expected 3 columns, got 4: '2,1,10,9'"),
        ("1,1,10\n2,1.5,10\n", "row 2 (line 3), column 'instrument_token': not a whole number: '1.5'"),
        ("1,1,-5\n", "row 1 (line 2), column 'last_price': -5.0 is not a positive price"),
        ("1,1,10\n2,1,0\n", "row 2 (line 3), column 'last_price': 0.0 is not a positive price"),
        ("1,0,10\n", "row 1 (line 2), column 'instrument_token': 0 is below 1"),
        ("1,1,10\n2,1,inf\n", "row 2 (line 3), column 'last_price': not a price: inf"),
    ],
)
def test_a_malformed_row_names_row_and_column(tmp_path: Path, body: str, where: str) -> None:
    f = write(tmp_path, "timestamp,instrument_token,last_price\n" + body)
    with pytest.raises(ValidationError) as err:
        load_ticks(f)
    assert str(f) in str(err.value) and where in str(err.value)


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="column 'last_price': required column is missing"):
        load_ticks(write(tmp_path, "timestamp,instrument_token\n1,1\n"))
    # a vendor's names: the error said only that 'timestamp' was missing, not which
    # columns the file has nor all it needs
    f = write(tmp_path, "time,token,ltp\n2026-04-06 09:15:00,738561,1290\n")
    assert error_of(f) == (
        f"{f}, column 'timestamp': required column is missing (the file has time, token, ltp; "
        "a tick file needs timestamp, instrument_token and last_price)")


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_write_then_load_round_trips_exactly(tmp_path: Path, name: str) -> None:
    cols = generate_random_walk(5000, 7, seed=3)
    extra = TickColumns(cols.ts, cols.instrument_token, cols.last_price, cols.volume,
                        {"high": cols.last_price + 5}, {"high": np.arange(5000) % 3 == 0})
    write_ticks(tmp_path / name, extra)
    back = load_ticks(tmp_path / name)
    for a, b in [(back.ts, cols.ts), (back.instrument_token, cols.instrument_token),
                 (back.last_price, cols.last_price), (back.volume, cols.volume)]:
        assert np.array_equal(a, b)
    assert [t.high for t in iter_ticks(back.slice(0, 4))] == [
        None, int(cols.last_price[1]) + 5, int(cols.last_price[2]) + 5, None]


def test_a_blank_last_quantity_is_0_and_the_tick_decodes_off_the_log(tmp_path: Path) -> None:
    # A vendor's row without the last traded quantity: the tick carried None where a
    # MarketTick has an int, and every process that read it back from the log (the paper
    # engine and the portfolio of a split run, Kafka) dead-lettered it as malformed.
    f = write(tmp_path, "timestamp,instrument_token,last_price,volume,last_quantity,oi\n"
                        "1,7,10.05,10,10,\n2,7,10.10,25,,40\n")
    ticks = list(iter_ticks(load_ticks(f)))
    assert [(t.last_quantity, t.oi) for t in ticks] == [(10, None), (0, 40)]
    for tick in ticks:
        env = Envelope(id="t", type=MarketTick.EVENT_TYPE, ts=tick.ts, source="s", key="7",
                       correlation_id="t", data=tick)
        assert CODEC.decode_as(CODEC.encode(env), MarketTick).data == tick


def test_a_tradable_column_reads_as_the_ticks_flag(tmp_path: Path) -> None:
    # ``ticks export`` writes it for an index (NIFTY 50: ``tradable: false`` on Kite's feed),
    # so that its replay rejects orders on it as the live paper exchange does
    f = write(tmp_path, "timestamp,instrument_token,last_price,tradable\n"
                        "1,256265,22000,false\n2,7,10.05,true\n3,7,10.05,\n4,256265,22001,0\n")
    ticks = list(iter_ticks(load_ticks(f)))
    assert [t.tradable for t in ticks] == [False, True, True, False]
    for tick in ticks:  # a bool on the log, not 0 or 1
        env = Envelope(id="t", type=MarketTick.EVENT_TYPE, ts=tick.ts, source="s", key="7",
                       correlation_id="t", data=tick)
        assert CODEC.decode_as(CODEC.encode(env), MarketTick).data == tick
    bad = write(tmp_path, "timestamp,instrument_token,last_price,tradable\n1,7,10,yes-ish\n")
    assert error_of(bad) == f"{bad}, row 1 (line 2), column 'tradable': not true or false: 'yes-ish'"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**11), min_size=1, max_size=30))
def test_any_paise_price_survives_csv(tmp_path_factory: pytest.TempPathFactory,
                                      paise: list[int]) -> None:
    n = len(paise)
    cols = TickColumns(np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64),
                       np.array(paise, dtype=np.int64), np.zeros(n, dtype=np.int64))
    f = tmp_path_factory.mktemp("h") / "p.csv"
    write_ticks(f, cols)
    assert load_ticks(f).last_price.tolist() == paise


def test_the_random_walk_is_deterministic_and_on_the_grid() -> None:
    a = generate_random_walk(20_000, 20, seed=42)
    b = generate_random_walk(20_000, 20, seed=42)
    assert np.array_equal(a.last_price, b.last_price) and np.array_equal(a.ts, b.ts)
    assert not np.array_equal(a.last_price, generate_random_walk(20_000, 20, seed=1).last_price)
    assert (a.last_price % 5 == 0).all() and (np.diff(a.ts) >= 0).all()
    assert len(set(a.instrument_token.tolist())) == 20
    for token in set(a.instrument_token.tolist()):
        steps = np.diff(a.last_price[a.instrument_token == token])
        assert set(steps.tolist()) <= {-5, 0, 5}


def test_tick_ids_depend_on_file_name_and_row_only() -> None:
    assert tick_source("/a/b/ticks.csv") == tick_source("ticks.csv") == "replay:ticks.csv"
    assert tick_id("replay:ticks.csv", 0) == tick_id("replay:ticks.csv", 0)
    assert tick_id("replay:ticks.csv", 0) != tick_id("replay:ticks.csv", 1)


def test_gzip_csv_and_an_empty_file(tmp_path: Path) -> None:
    import gzip

    f = tmp_path / "t.csv.gz"
    with gzip.open(f, "wt") as out:
        out.write("timestamp,instrument_token,last_price\n1,1,10.05\n2,1,x\n")
    with pytest.raises(ValidationError, match="row 2 \\(line 3\\), column 'last_price'"):
        load_ticks(f)
    with gzip.open(f, "wt") as out:
        out.write("timestamp,instrument_token,last_price\n1,1,10.05\n")
    assert load_ticks(f).last_price.tolist() == [1005]


HEADER = "timestamp,instrument_token,last_price,volume\n"


def ticks_csv(tmp_path: Path, n: int, bad: dict[int, str], *, iso: bool = False) -> Path:
    """``n`` good rows (int ns or ISO times), with ``bad[line]`` as that file line instead."""
    rows = [f"2026-01-01T03:45:{i:02d}" if iso else str(1_767_239_100_000_000_000 + i)
            for i in range(n)]
    lines = [f"{t},341249,1650.05,{i + 1}" for i, t in enumerate(rows)]
    for line, text in bad.items():
        lines[line - 2] = text  # the header is line 1
    return write(tmp_path, HEADER + "\n".join(lines) + "\n")


def error_of(path: Path) -> str:
    with pytest.raises(ValidationError) as err:
        load_ticks(path)
    return str(err.value)


@pytest.mark.parametrize("iso", [False, True])
def test_a_bad_timestamp_is_named_by_its_line_and_quoted(tmp_path: Path, iso: bool) -> None:
    f = ticks_csv(tmp_path, 60, {50: "2026-13-45T00:00:00,341249,1650.05,1"}, iso=iso)
    assert error_of(f) == (f"{f}, row 49 (line 50), column 'timestamp': "
                           "not int nanoseconds or ISO-8601: '2026-13-45T00:00:00'")


@pytest.mark.parametrize(("value", "unit", "scale"), [
    (1775447100, "seconds", 10**9), (1775447100250, "milliseconds", 10**6),
    (1775447100250000, "microseconds", 10**3),
])
@pytest.mark.parametrize("kind", ["csv", "iso", "parquet"])
def test_int_times_in_seconds_or_milliseconds_are_an_error(
        tmp_path: Path, value: int, unit: str, scale: int, kind: str) -> None:
    # Epoch seconds or milliseconds (most vendors' exports) read as nanoseconds put a
    # session's ticks into the first seconds of 1970: the backtest of a generated 2-session
    # file, its times divided by 10^9, gave 202 fills and -1,451.88 net instead of 198 and
    # -1,516.29, warned only that 1970's holidays were unknown.
    first = 1775447100_000_000_000  # 2026-04-06 09:15 IST
    rows = [value, first]  # (in order, read as nanoseconds)
    if kind == "parquet":
        f = tmp_path / "t.parquet"
        pq.write_table(pa.table({"timestamp": pa.array(rows, pa.int64()),
                                 "instrument_token": [1, 1], "last_price": [10.0, 10.0]}), f)
    else:
        times = [str(t) for t in rows]
        if kind == "iso":
            times[1] = "2026-04-06T09:15:00+05:30"
        f = write(tmp_path, "timestamp,instrument_token,last_price\n"
                  + "".join(f"{t},1,10\n" for t in times))
    line = " (line 2)" if kind != "parquet" else ""
    assert error_of(f) == (
        f"{f}, row 1{line}, column 'timestamp': {value} is not in nanoseconds since the epoch "
        f"(it would be {ist_time(value)}); in {unit} it is {ist_time(value * scale)}: "
        f"write int timestamps in nanoseconds, or ISO-8601")
    # a small int is taken as it is (tests and synthetic files count from 0)
    assert load_ticks(write(tmp_path, "timestamp,instrument_token,last_price\n5,1,10\n")).ts[0] == 5


def test_int_nanoseconds_and_iso_times_may_be_mixed(tmp_path: Path) -> None:
    f = write(tmp_path, "timestamp,instrument_token,last_price\n"
              "1704080700000000000,1,10\n2024-01-01T09:15:01+05:30,1,10\n1704080702000000000,1,10\n")
    assert load_ticks(f).ts.tolist() == [1704080700_000000000, 1704080701_000000000,
                                         1704080702_000000000]


@pytest.mark.parametrize(("text", "message"), [
    ("", "no ticks: the file is empty"),
    ("timestamp,instrument_token,last_price\n", "no ticks: the file has a header but no rows"),
])
@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_a_file_without_ticks_is_an_error(tmp_path: Path, text: str, message: str,
                                          name: str) -> None:
    import gzip

    f = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(f, "wt") as out:
            out.write(text)
    else:
        f.write_text(text)
    assert error_of(f) == f"{f}: {message}"


def test_a_parquet_file_without_ticks_or_not_parquet_is_an_error(tmp_path: Path) -> None:
    empty = generate_random_walk(5, 1).slice(0, 0)
    write_ticks(tmp_path / "none.parquet", empty)
    assert error_of(tmp_path / "none.parquet") == (
        f"{tmp_path / 'none.parquet'}: no ticks: the file has no rows")
    junk = write(tmp_path, HEADER, "junk.parquet")
    assert error_of(junk).startswith(f"{junk}: not a readable Parquet file: ")


def test_a_short_row_is_named_by_its_file_line_past_empty_lines(tmp_path: Path) -> None:
    f = write(tmp_path, HEADER + "1,341249,1650.05,1\n\n2,341249,1650.10,1\n\n3,341249\n")
    assert error_of(f) == (f"{f}, row 3 (line 6), column 'last_price': "
                           "expected 4 columns, got 2: '3,341249'")


def test_bad_values_past_empty_lines_are_named_by_their_file_line(tmp_path: Path) -> None:
    f = write(tmp_path, HEADER + "\n1,341249,1650.05,1\n\n2,341249,-5,1\n")
    assert error_of(f) == f"{f}, row 2 (line 5), column 'last_price': -5.0 is not a positive price"


def test_negative_prices_volumes_and_quantities_are_rejected(tmp_path: Path) -> None:
    f = ticks_csv(tmp_path, 20, {11: "1767239100000000009,341249,1650.05,-3"})
    assert error_of(f) == f"{f}, row 10 (line 11), column 'volume': -3 is negative"
    f = write(tmp_path, "timestamp,instrument_token,last_price,open,oi\n1,1,10,9.5,\n2,1,10,,-1\n")
    assert error_of(f) == f"{f}, row 2 (line 3), column 'oi': -1 is negative"
    f = write(tmp_path, "timestamp,instrument_token,last_price,open\n1,1,10,0\n2,1,10,-9.5\n")
    assert error_of(f) == f"{f}, row 2 (line 3), column 'open': -9.5 is negative"


def test_prices_off_the_nse_equity_grid_are_kept(tmp_path: Path) -> None:
    # 0.01 ticks exist (NSE below ₹250 since 2025, BSE, indices): not an error.
    f = ticks_csv(tmp_path, 20, {11: "1767239100000000009,341249,1650.03,1"})
    assert load_ticks(f).last_price.tolist()[9] == 165003


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "t.parquet"
    pq.write_table(pa.table({"timestamp": [1, 2, 3], "instrument_token": [1, 1, 1],
                             "last_price": [10.0, 10.05, -5.0]}), f)
    assert error_of(f) == f"{f}, row 3, column 'last_price': -5.0 is not a positive price"
    pq.write_table(pa.table({"timestamp": [1, 2, 3], "instrument_token": [1.0, 1.5, 1.0],
                             "last_price": [10.0, 10.05, 5.0]}), f)
    assert error_of(f) == f"{f}, row 2, column 'instrument_token': not a whole number: 1.5"
    pq.write_table(pa.table({"timestamp": ["2024-01-01T00:00:00", "soon"],
                             "instrument_token": [1, 1], "last_price": [10.0, float("nan")]}), f)
    assert error_of(f) == f"{f}, row 2, column 'timestamp': not int nanoseconds or ISO-8601: 'soon'"


def test_a_column_named_twice_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path, "timestamp,instrument_token,last_price,last_price\n1,1,10,11\n")
    assert error_of(f) == f"{f}, column 'last_price': the column appears more than once"


def test_the_csv_reader_is_given_no_python_callback(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # pyarrow's threaded CSV reader drops a Python invalid_row_handler from a worker thread,
    # at times after read_csv returned: during interpreter exit (an error right after the
    # read) that thread aborts the process ("terminate called without an active
    # exception", exit 134). A race, about 1 exit in 50-100: this checks its cause.
    import pyarrow.csv as pacsv

    seen: list[object] = []
    real = pacsv.read_csv

    def spy(*args: object, **kwargs: object) -> object:
        options = kwargs.get("parse_options")
        seen.append(getattr(options, "invalid_row_handler", None))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pacsv, "read_csv", spy)
    load_ticks(write(tmp_path, HEADER + "1,341249,1650.05,1\n"))
    with pytest.raises(ValidationError, match="line 3"):
        load_ticks(write(tmp_path, HEADER + "1,341249,1650.05,1\n2,341249\n"))
    assert seen and all(handler is None for handler in seen)


def test_a_float32_price_column_reads_as_the_paise_it_was_written_as(tmp_path: Path) -> None:
    path = tmp_path / "f32.parquet"
    pq.write_table(pa.table({
        "timestamp": pa.array([1, 2, 3], pa.int64()),
        "instrument_token": pa.array([738561] * 3, pa.int64()),
        "last_price": pa.array([2500.05, 99.95, 1289.9], pa.float32()),
    }), path)
    assert load_ticks(path).last_price.tolist() == [2500_05, 99_95, 1289_90]
    pq.write_table(pa.table({
        "timestamp": pa.array([1], pa.int64()), "instrument_token": pa.array([1], pa.int64()),
        "last_price": pa.array([2500.053], pa.float32()),
    }), path)
    with pytest.raises(ValidationError, match="not a price in whole paise"):
        load_ticks(path)
    # past 2^23 paise float32 cannot tell one paisa from the next: 140000.10 read back
    # as 14000009 paise once
    pq.write_table(pa.table({
        "timestamp": pa.array([1, 2], pa.int64()), "instrument_token": pa.array([1, 1], pa.int64()),
        "last_price": pa.array([83000.05, 140000.10], pa.float32()),
    }), path)
    with pytest.raises(ValidationError, match=r"row 2, column 'last_price': 140000.09375 in a "
                                              r"float32 column: too coarse for whole paise"):
        load_ticks(path)
    pq.write_table(pa.table({
        "timestamp": pa.array([1], pa.int64()), "instrument_token": pa.array([1], pa.int64()),
        "last_price": pa.array([83000.05], pa.float32()),  # held as 83000.046875
    }), path)
    assert load_ticks(path).last_price.tolist() == [83000_05]
