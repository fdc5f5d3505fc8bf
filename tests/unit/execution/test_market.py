"""NSE session calendar, holidays and circuit bands, in event time."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

from alpha_panda.execution.market import (
    CircuitBands,
    MarketCalendar,
    SessionClock,
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
    assert len([d for d in CAL.holidays if d.year == 2026]) == 15


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
    assert bands.limits(738561, 1290_00) == (1161_00, 1419_00)
    assert bands.limits(1, 123_47) == (98_80, 148_15)  # 98.776 -> 98.80, 148.164 -> 148.15
    assert CircuitBands(default_percent=None).limits(1, 100_00) is None
    assert CircuitBands.load().limits(738561, 1000_00) == (900_00, 1100_00)
