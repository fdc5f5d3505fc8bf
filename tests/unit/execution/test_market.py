"""NSE session calendar, holidays and circuit bands, in event time."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from pathlib import Path

import pytest

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.execution.market import (
    CircuitBands,
    MarketCalendar,
    SessionClock,
    TickSizes,
    ist_date,
    ist_ns,
)

CAL = MarketCalendar.load()


def test_session_hours_weekends_and_holidays() -> None:
    monday = date(2026, 11, 23)
    assert CAL.is_open(ist_ns(monday, time(9, 15)))
    assert not CAL.is_open(ist_ns(monday, time(9, 14, 59)))
    assert CAL.is_open(ist_ns(monday, time(15, 29, 59)))
    assert not CAL.is_open(ist_ns(monday, time(15, 30)))
    assert not CAL.is_open(ist_ns(date(2026, 11, 24), time(11, 0)))  # Guru Nanak Jayanti
    assert not CAL.is_open(ist_ns(date(2026, 11, 28), time(11, 0)))  # Saturday
    assert len([d for d in CAL.holidays if d.year == 2026]) == 16


def test_next_open_skips_holidays_and_weekends() -> None:
    friday_evening = ist_ns(date(2026, 12, 24), time(18, 0))
    # 25 Dec (Fri) is a holiday, then the weekend: Monday 28 Dec 09:15
    assert CAL.next_open_ns(friday_evening) == ist_ns(date(2026, 12, 28), time(9, 15))
    early = ist_ns(date(2026, 11, 23), time(8, 0))
    assert CAL.next_open_ns(early) == ist_ns(date(2026, 11, 23), time(9, 15))


def test_ist_dates_and_session_clock() -> None:
    # 20:00 UTC on the 23rd is 01:30 IST on the 24th
    ts = ist_ns(date(2026, 11, 24), time(1, 30))
    assert ist_date(ts) == date(2026, 11, 24)
    clock = SessionClock(CAL, time(15, 20))
    sess = clock.session(ts)
    assert sess.cutoff == ist_ns(date(2026, 11, 24), time(15, 20))
    assert sess.close == ist_ns(date(2026, 11, 24), time(15, 30))
    assert clock.session(sess.hi).day == date(2026, 11, 25)


def test_circuit_bands_round_inwards_onto_the_tick_grid() -> None:
    bands = CircuitBands(default_percent=Decimal(20), instruments={738561: Decimal(10)})
    assert bands.limits(738561, 1290_00, 5) == (1161_00, 1419_00)
    assert bands.limits(1, 123_47, 5) == (98_80, 148_15)  # 98.776 -> 98.80, 148.164 -> 148.15
    assert bands.limits(1, 123_47, 1) == (98_78, 148_16)  # on a 1 paisa tick
    assert bands.limits(738561, 1234_50, 10) == (1111_10, 1357_90)  # 1111.05, 1357.95 inwards
    assert CircuitBands(default_percent=None).limits(1, 100_00, 5) is None
    assert CircuitBands.load().limits(738561, 1000_00, 5) == (900_00, 1100_00)


TICKS = TickSizes.load()


@pytest.mark.parametrize(("day", "price", "tick"), [
    (date(2024, 6, 7), 120_00, 5),  # 0.05 everywhere before 10 June 2024
    (date(2024, 6, 7), 30_000_00, 5),
    (date(2024, 6, 10), 249_99, 1),  # then 0.01 below Rs 250
    (date(2024, 6, 10), 250_00, 5),
    (date(2024, 6, 10), 12_000_00, 5),
    (date(2025, 4, 14), 1_500_00, 5),
    (date(2025, 4, 15), 249_99, 1),  # then by price band
    (date(2025, 4, 15), 250_00, 5),
    (date(2025, 4, 15), 1_000_00, 5),  # "above 1,000 to 5,000": 1,000 itself is 0.05
    (date(2025, 4, 15), 1_000_05, 10),
    (date(2025, 4, 15), 5_000_00, 10),
    (date(2026, 11, 23), 6_900_00, 50),
    (date(2026, 11, 23), 11_200_00, 100),
    (date(2026, 11, 23), 20_000_10, 500),
    (date(1999, 1, 1), 120_00, 5),  # before the table: its first schedule
])
def test_nse_tick_size_by_date_and_price_band(day: date, price: int, tick: int) -> None:
    assert TICKS.at(day, price) == tick


@pytest.mark.parametrize("body", [
    '{"schedules": []}',
    '{"schedules": [{"effective_from": "2025-01-01", "bands": [{"below": "250", "tick": "0.01"}]}]}',
    '{"schedules": [{"effective_from": "2025-01-01", "bands": [{"tick": "0.005"}]}]}',
    '{"schedules": [{"effective_from": "2025-13-01", "bands": [{"tick": "0.05"}]}]}',
    ('{"schedules": [{"effective_from": "2025-01-01", '
     '"bands": [{"below": "1", "up_to": "2", "tick": "0.01"}, {"tick": "0.05"}]}]}'),
])
def test_a_bad_tick_size_file_is_a_configuration_error(tmp_path: Path, body: str) -> None:
    path = tmp_path / "ticks.json"
    path.write_text(body)
    with pytest.raises(ConfigurationError, match="tick size file"):
        TickSizes.load(path)


def test_2024s_holidays_are_listed_with_the_two_declared_later() -> None:
    assert not CAL.is_trading_day(date(2024, 1, 22))  # declared in January 2024
    assert not CAL.is_trading_day(date(2024, 11, 20))  # Maharashtra's assembly election
    assert not CAL.is_trading_day(date(2024, 11, 1))  # Diwali Laxmi Pujan
    assert CAL.is_trading_day(date(2024, 1, 23))
    assert len([d for d in CAL.holidays if d.year == 2024]) == 17
    assert CAL.years == frozenset({2024, 2025, 2026})


def test_2026s_holidays_include_the_one_declared_in_january() -> None:
    # NSE's circular of 12 January 2026 closed 15 January (Thursday) for Maharashtra's
    # municipal elections: no session that day, and an order queued for the open on the
    # evening of the 14th waits for Friday's.
    assert not CAL.is_trading_day(date(2026, 1, 15))
    assert CAL.next_open_ns(ist_ns(date(2026, 1, 14), time(18, 0))) == \
        ist_ns(date(2026, 1, 16), time(9, 15))


def test_years_the_calendar_does_not_list_are_named() -> None:
    # A weekday of a year the file does not list counts as a trading day: 26 January 2027,
    # Republic Day, would be traded. Said, not guessed.
    assert CAL.is_trading_day(date(2027, 1, 26))
    note = CAL.unknown_years_note(ist_ns(date(2026, 12, 31), time(9, 15)),
                                  ist_ns(date(2027, 1, 4), time(9, 15)))
    assert note is not None and note.startswith(
        "NSE's holidays of 2027 are not in alpha_panda/data/nse_holidays.json (it lists "
        "2024-2026): each weekday of that year counts as a trading day")
    assert CAL.unknown_years([2023, 2024, 2027, 2027]) == [2023, 2027]
    assert CAL.unknown_years_note(ist_ns(date(2024, 3, 1), time(10, 0)),
                                  ist_ns(date(2026, 12, 31), time(15, 0))) is None
    # a calendar that says nothing of its years is taken at its word
    assert MarketCalendar().unknown_years([1999]) == []
