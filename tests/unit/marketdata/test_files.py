from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import MarketTick
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
              "2024-01-01T03:45:01,408065,1234,1,1200.10\n")
    cols = load_ticks(f)
    assert cols.ts.tolist() == [1704080700_000000000, 1704080700_000000001, 1704080701_000000000]
    assert cols.last_price.tolist() == [250005, 5, 123400]
    assert cols.volume.tolist() == [3, 7, 1]
    ticks = list(iter_ticks(cols))
    assert ticks[0] == MarketTick(instrument_token=341249, last_price=250005,
                                  ts=1704080700_000000000, volume=3, open=249950)
    assert ticks[1].open is None and ticks[2].open == 120010


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
        ("1,1,10\n2,1\n", "expected 3 columns, got 2"),
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
    assert len(load_ticks(write(tmp_path, "timestamp,instrument_token,last_price\n"))) == 0
