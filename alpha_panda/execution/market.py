"""NSE market rules in event time: session hours, holidays, circuit (price) bands, tick sizes.

The calendar, the bands and the tick sizes come from versioned data files in
``alpha_panda/data/`` (``nse_holidays.json``, ``circuit_bands.json``, ``tick_sizes.json``)
so a new year's holidays, a band or a tick size change is a data edit. Every function takes event time in int ns since the epoch (UTC)
and works in IST; nothing reads the wall clock.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import cache
from pathlib import Path
from typing import Any

from alpha_panda.domain.clock import NS, hhmm, ist_date, ist_ns
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.values import PAISE_PER_RUPEE, Paise

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def _read(path: Path) -> dict[str, Any]:
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    return raw


@dataclass(frozen=True, slots=True)
class MarketCalendar:
    """NSE's regular session (09:15–15:30 IST by default), weekends and listed holidays closed."""

    open: time = time(9, 15)
    close: time = time(15, 30)
    holidays: frozenset[date] = field(default_factory=frozenset)
    years: frozenset[int] = field(default_factory=frozenset)
    """The years whose holidays are listed (none: not said, every year taken as known)."""

    @property
    def session_seconds(self) -> int:
        """Length of a regular session (22,500 s: 09:15 to 15:30)."""
        return (self.close.hour * 3600 + self.close.minute * 60 + self.close.second
                - self.open.hour * 3600 - self.open.minute * 60 - self.open.second)

    @classmethod
    def load(cls, path: Path | None = None) -> MarketCalendar:
        """The calendar in ``path`` (default: the packaged ``nse_holidays.json``)."""
        raw = _read(path or DATA_DIR / "nse_holidays.json")
        try:
            session = raw.get("session", {})
            holidays = frozenset(date.fromisoformat(d) for d in raw["holidays"])
            return cls(
                open=hhmm(session.get("open", "09:15")),
                close=hhmm(session.get("close", "15:30")),
                holidays=holidays,
                years=frozenset(int(y) for y in raw.get("years", {d.year for d in holidays})),
            )
        except (KeyError, ValueError) as exc:
            raise ConfigurationError(f"bad holiday file: {exc!r}") from exc

    def unknown_years(self, years: Iterable[int]) -> list[int]:
        """Those of ``years`` whose holidays the calendar does not list: a weekday of theirs
        is taken for a trading day."""
        return sorted({y for y in years if self.years and y not in self.years})

    def unknown_years_note(self, first_ns: int, last_ns: int | None = None) -> str | None:
        """What to tell of the years from ``first_ns`` to ``last_ns`` (event times) the
        calendar does not cover, or None."""
        last = first_ns if last_ns is None else last_ns
        years = range(ist_date(first_ns).year, ist_date(last).year + 1)
        unknown = self.unknown_years(years)
        if not unknown:
            return None
        known = f"{min(self.years)}-{max(self.years)}" if len(self.years) > 1 else \
            str(min(self.years))
        return (f"NSE's holidays of {', '.join(map(str, unknown))} are not in "
                f"alpha_panda/data/nse_holidays.json (it lists {known}): each weekday of "
                f"{'that year' if len(unknown) == 1 else 'those years'} counts as a trading day "
                "(sessions, DAY orders' expiry, market_hours); add them from NSE's circular")

    def is_trading_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def is_open(self, ts_ns: int) -> bool:
        """True inside the session [open, close) of a trading day."""
        day = ist_date(ts_ns)
        if not self.is_trading_day(day):
            return False
        return ist_ns(day, self.open) <= ts_ns < ist_ns(day, self.close)

    def close_ns(self, ts_ns: int) -> int:
        """Event time of the close of the session day ``ts_ns`` falls on (IST date)."""
        return ist_ns(ist_date(ts_ns), self.close)

    def next_open_ns(self, ts_ns: int) -> int:
        """``ts_ns`` itself if the market is open then, else the next session's open."""
        if self.is_open(ts_ns):
            return ts_ns
        day = ist_date(ts_ns)
        if self.is_trading_day(day) and ts_ns < ist_ns(day, self.open):
            return ist_ns(day, self.open)
        day += timedelta(days=1)
        while not self.is_trading_day(day):
            day += timedelta(days=1)
        return ist_ns(day, self.open)


@dataclass(frozen=True, slots=True)
class CircuitBands:
    """Per-instrument price bands, in percent of the reference (previous close) price."""

    default_percent: Decimal | None = Decimal(20)
    instruments: dict[int, Decimal] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> CircuitBands:
        raw = _read(path or DATA_DIR / "circuit_bands.json")
        try:
            default = raw.get("default_percent")
            return cls(
                default_percent=None if default is None else Decimal(str(default)),
                instruments={int(k): Decimal(str(v)) for k, v in raw["instruments"].items()},
            )
        except (KeyError, ValueError, ArithmeticError) as exc:
            raise ConfigurationError(f"bad circuit band file: {exc!r}") from exc

    def limits(self, token: int, reference: int, tick: Paise) -> tuple[int, int] | None:
        """(lower, upper) price in paise, on the ``tick`` grid inside the band; None = no band."""
        pct = self.instruments.get(token, self.default_percent)
        if pct is None:
            return None
        width = Decimal(reference) * pct / 100
        # the exchange rounds the band inwards onto the tick grid
        lower = int(((Decimal(reference) - width) / tick).to_integral_value(ROUND_CEILING))
        upper = int(((Decimal(reference) + width) / tick).to_integral_value(ROUND_FLOOR))
        return lower * tick, upper * tick


_Band = tuple[Paise | None, bool, Paise]  # (limit, inclusive, tick); None = no upper limit


def _rupees_to_paise(text: str) -> Paise:
    paise = Decimal(text) * PAISE_PER_RUPEE
    if paise != paise.to_integral_value() or paise <= 0:
        raise ValueError(f"{text} is not a positive whole number of paise")
    return int(paise)


@dataclass(frozen=True, slots=True)
class TickSizes:
    """NSE's tick size by date and price band (``tick_sizes.json``).

    ``at(day, reference)`` is the tick of an instrument whose reference price is
    ``reference`` paise on ``day``: 0.05 everywhere before 2024-06-10, 0.01 below Rs 250
    from then, six bands from Rs 0.01 to Rs 5 from 2025-04-15. NSE fixes a stock's tick
    from its closing price at the end of a review period; the paper exchange takes the
    price its circuit band is referenced to (the previous close, else the session's first
    price), so a replay of 2024 data trades on the 0.05 grid of its day.
    """

    schedules: tuple[tuple[date, tuple[_Band, ...]], ...]

    @classmethod
    def load(cls, path: Path | None = None) -> TickSizes:
        """The table in ``path`` (default: the packaged ``tick_sizes.json``)."""
        raw = _read(path or DATA_DIR / "tick_sizes.json")
        try:
            schedules = []
            for schedule in raw["schedules"]:
                bands: list[_Band] = []
                for band in schedule["bands"]:
                    below, up_to = band.get("below"), band.get("up_to")
                    if below is not None and up_to is not None:
                        raise ValueError(f"band {band} has both below and up_to")
                    limit = below if below is not None else up_to
                    bands.append((None if limit is None else _rupees_to_paise(str(limit)),
                                  up_to is not None, _rupees_to_paise(str(band["tick"]))))
                if not bands or bands[-1][0] is not None:
                    raise ValueError(f"{schedule['effective_from']}: the last band needs no limit")
                schedules.append((date.fromisoformat(schedule["effective_from"]), tuple(bands)))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ConfigurationError(f"bad tick size file: {exc!r}") from exc
        if not schedules:
            raise ConfigurationError("bad tick size file: no schedules")
        return cls(tuple(sorted(schedules)))

    def at(self, day: date, reference: Paise) -> Paise:
        """The tick in paise on ``day`` for a reference price of ``reference`` paise."""
        i = bisect_right(self.schedules, day, key=lambda s: s[0]) - 1
        for limit, inclusive, tick in self.schedules[max(i, 0)][1]:
            if limit is None or reference < limit or (inclusive and reference == limit):
                return tick
        raise AssertionError("unreachable: the last band has no limit")


@cache
def nse_tick_sizes() -> TickSizes:
    """The packaged table, read once."""
    return TickSizes.load()


_DAY_NS = 86_400 * NS


@dataclass(frozen=True, slots=True)
class Session:
    """One IST calendar day in event time: [lo, hi), its MIS cut-off and its close."""

    day: date
    lo: int
    hi: int
    cutoff: int | None
    close: int


class SessionClock:
    """The ``Session`` of an event time, cached: consecutive ticks nearly always share a day."""

    def __init__(self, calendar: MarketCalendar, mis_cutoff: time | None) -> None:
        self._calendar = calendar
        self._cutoff = mis_cutoff
        self._last: Session | None = None

    @property
    def cutoff(self) -> time | None:
        """The MIS cut-off (IST) each session gets; None: none."""
        return self._cutoff

    def session(self, ts_ns: int) -> Session:
        sess = self._last
        if sess is None or not sess.lo <= ts_ns < sess.hi:
            day = ist_date(ts_ns)
            lo = ist_ns(day, time(0, 0))
            cut = ist_ns(day, self._cutoff) if self._cutoff is not None else None
            sess = self._last = Session(day, lo, lo + _DAY_NS, cut, ist_ns(day, self._calendar.close))
        return sess

