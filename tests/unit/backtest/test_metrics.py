"""The summary's performance figures: daily Sharpe, net and gross win rates, time in market."""

from __future__ import annotations

import math
import statistics
from datetime import date, time

import pytest

from alpha_panda.backtest.metrics import (
    RoundTrip,
    RoundTripTracker,
    exposure,
    performance,
    sharpe,
)
from alpha_panda.domain.clock import ist_ns
from alpha_panda.portfolio.ledger import Position

S = 1_000_000_000
DAY = 86_400 * S
T0 = 1_704_080_700_000_000_000  # 2024-01-01 09:15 IST


def test_sharpe_is_null_within_one_trading_day() -> None:
    # 17 minutes of a falling account, a point a minute: once annualised to -2,925.
    minutes = [(T0 + m * 60 * S, 1_000_000 - 100 * m - 37 * (m % 3)) for m in range(18)]
    assert sharpe(minutes, 1_000_000) is None


def test_sharpe_annualises_daily_returns_from_each_days_close() -> None:
    # Day 1 closes at 101,000 (its 100,500 earlier in the day does not count), then
    # 100,000, then 103,000: returns 1%, -0.990099%, 3%; mean/stdev x sqrt(252).
    points = [(T0, 100_500), (T0 + 3600 * S, 101_000), (T0 + DAY, 100_000),
              (T0 + 2 * DAY, 103_000)]
    assert sharpe(points, 100_000) == pytest.approx(7.983201718818805, rel=1e-12)


def test_trading_days_are_ist_dates() -> None:
    # 23:59 and 00:01 IST (18:29 and 18:31 UTC) are two days: returns 1% then 3%,
    # mean 2%, stdev 1.414214%: 1.414214 x sqrt(252).
    late = T0 + (14 * 3600 + 44 * 60) * S  # 23:59 IST on day 1
    two_days = [(late, 101_000), (late + 2 * 60 * S, 104_030)]
    assert sharpe(two_days, 100_000) == pytest.approx(22.449944320643645, rel=1e-12)
    same_day = [(late - 2 * 60 * S, 101_000), (late, 104_030)]  # 23:57 and 23:59
    assert sharpe(same_day, 100_000) is None


def test_flat_daily_returns_have_no_sharpe() -> None:
    assert sharpe([(T0, 101_000), (T0 + DAY, 102_010)], 100_000) is None  # 1% and 1%


def _fill(t: RoundTripTracker, pos: Position, qty: int, ts: int, realized: int = 0,
          charges: int = 0) -> None:
    before = pos.quantity
    pos.quantity += qty
    pos.realized += realized
    pos.charges += charges
    t.after_fill(pos, before, ts, charges)


def test_a_trip_that_wins_gross_can_lose_net_of_charges() -> None:
    t = RoundTripTracker()
    a = Position("s", 1)
    _fill(t, a, 10, 1, charges=1_300)
    _fill(t, a, -10, 2, realized=50, charges=1_400)  # +Rs 0.50 gross, Rs 27 charges
    _fill(t, a, 5, 3, charges=100)
    _fill(t, a, -5, 4, realized=-20, charges=100)
    assert t.trips == [RoundTrip("s", 1, 1, 2, 10, -2_650, 50),
                       RoundTrip("s", 1, 3, 4, 5, -220, -20)]
    assert (t.closed, t.won, t.won_gross) == (2, 0, 1)
    assert (t.win_rate, t.gross_win_rate) == (0.0, 0.5)


def test_time_in_market_is_the_union_of_held_spans_whatever_the_fill_order() -> None:
    t = RoundTripTracker(keep_trips=False)
    a, b, c = Position("s", 1), Position("s", 2), Position("s", 3)
    # instrument 2's fills arrive after instrument 1's later ones (another partition)
    _fill(t, a, 1, 10)
    _fill(t, a, -1, 30)
    _fill(t, a, 1, 60)
    _fill(t, a, -1, 80)
    _fill(t, b, 2, 20)
    _fill(t, b, -2, 40)   # held: [10, 40] and [60, 80]
    _fill(t, c, -3, 90)   # still open
    assert t.time_in_market(100) == 30 + 20 + 10


def test_exposure_is_a_share_of_session_time_nights_and_weekends_left_out() -> None:
    # Friday 2026-12-04 10:00 to Monday 2026-12-07 15:30: two sessions of 6 h 15 m with a
    # weekend between; held from Friday 14:30 to Monday 10:15 (overnight): 1 h + 1 h
    t = RoundTripTracker(keep_trips=False)
    a = Position("s", 1)
    fri, mon = date(2026, 12, 4), date(2026, 12, 7)
    _fill(t, a, 1, ist_ns(fri, time(14, 30)))
    _fill(t, a, -1, ist_ns(mon, time(10, 15)))
    start, end = ist_ns(fri, time(10)), ist_ns(mon, time(15, 30))
    sessions = (5 * 60 + 30) + (6 * 60 + 15)  # minutes: Friday from 10:00, all of Monday
    assert exposure(t, start, end) == pytest.approx(120 / sessions)
    # event time would say 67 of 77.5 hours
    assert t.time_in_market(end) / (end - start) == pytest.approx((67 + 45 / 60) / 77.5)
    # a synthetic file at night: no session in it, so a share of event time
    night = RoundTripTracker(keep_trips=False)
    _fill(night, a, 1, ist_ns(fri, time(2, 10)))
    assert exposure(night, ist_ns(fri, time(2)), ist_ns(fri, time(2, 20))) == 0.5


def test_performance_figures_exactly() -> None:
    t = RoundTripTracker()
    a = Position("s", 1)
    _fill(t, a, 10, T0 + 10 * S, charges=100)
    _fill(t, a, -10, T0 + 40 * S, realized=500, charges=100)
    samples = [(T0 + 20 * S, 1_000_200, 50_000), (T0 + 30 * S, 999_700, 49_500),
               (T0 + 100 * S, 1_000_300, 0)]
    assert performance(samples=samples, initial_equity=1_000_000, trips=t,
                       start_ns=T0, end_ns=T0 + 100 * S) == {
        "win_rate": 1.0, "gross_win_rate": 1.0,
        "max_drawdown": "5.00", "max_drawdown_pct": 0.049990,
        "sharpe": None, "exposure": 0.3, "max_gross_exposure": "500.00",
        "initial_equity": "10000.00", "final_equity": "10003.00", "net_deposits": "0.00"}
    # the same capital at every sample (a pipeline's run) gives the very same figures
    assert performance(samples=samples, initial_equity=1_000_000, trips=t, start_ns=T0,
                       end_ns=T0 + 100 * S, capital=[1_000_000] * 3) == performance(
        samples=samples, initial_equity=1_000_000, trips=t, start_ns=T0, end_ns=T0 + 100 * S)


LAKH = 1_00_000_00  # paise


def test_capital_added_or_withdrawn_is_not_a_gain_or_a_drawdown() -> None:
    # Two strategies (₹20 lakh); a third added on day 2 (₹30 lakh), removed on day 3. The
    # account's net P&L: -500, +200 on day 1; +100, -900 on day 2; -400 on day 3.
    k0, k1 = 20 * LAKH, 30 * LAKH
    points = [(T0 + 60 * S, k0 - 500_00, k0), (T0 + 3600 * S, k0 + 200_00, k0),
              (T0 + DAY + 60 * S, k1 + 100_00, k1), (T0 + DAY + 3600 * S, k1 - 900_00, k1),
              (T0 + 2 * DAY + 60 * S, k0 - 400_00, k0)]
    samples = [(ts, e, 0) for ts, e, _ in points]
    figures = performance(samples=samples, initial_equity=k0, trips=RoundTripTracker(),
                          start_ns=T0, end_ns=points[-1][0], capital=[c for *_, c in points])
    # the fall of net P&L from +200 to -900, in % of the equity at that high
    assert figures["max_drawdown"] == "1100.00"
    assert figures["max_drawdown_pct"] == round(100 * 1100_00 / (k0 + 200_00), 6)
    # (its equity alone fell ₹10,00,500 from day 2's high: once the reported drawdown)
    assert figures["final_equity"] == "1999600.00" and figures["initial_equity"] == "2000000.00"
    assert figures["net_deposits"] == "0.00"
    # each day's return: its change of net P&L on the previous close plus the capital added
    rets = [200_00 / k0, -1100_00 / (k1 + 200_00), 500_00 / (k0 - 900_00)]
    expected = statistics.mean(rets) / statistics.stdev(rets) * math.sqrt(252)
    assert figures["sharpe"] == round(expected, 6)
    # a strategy added and kept: +₹10 lakh of capital, final - initial is the net P&L
    kept = performance(samples=samples[:4], initial_equity=k1, trips=RoundTripTracker(),
                       start_ns=T0, end_ns=points[3][0], capital=[k0, k0, k1, k1])
    assert (kept["initial_equity"], kept["final_equity"], kept["net_deposits"]) == (
        "3000000.00", "2999100.00", "1000000.00")
    assert kept["max_drawdown"] == "1100.00"
