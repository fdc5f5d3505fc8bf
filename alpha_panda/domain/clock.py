"""Indian Standard Time for event times (int ns since the epoch, UTC): the one place the
project converts between them. Pure, except ``today_ist``, which reads the wall clock."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30))
NS = 1_000_000_000


def hhmm(text: str) -> time:
    """``"09:15"`` as a ``time``; ValueError if it is not one."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def ist_date(ts_ns: int) -> date:
    """The IST calendar date of an event time."""
    return datetime.fromtimestamp(ts_ns // NS, IST).date()


IST_OFFSET_NS = 19_800 * NS  # UTC+05:30
DAY_NS = 86_400 * NS


def ist_day_number(ts_ns: int) -> int:
    """The IST calendar day of an event time as a number (days since 1970-01-01 IST): cheap
    enough for every fill."""
    return (ts_ns + IST_OFFSET_NS) // DAY_NS


def ist_ns(day: date, at: time) -> int:
    """Event time (ns) of ``at`` IST on ``day``."""
    return int(datetime.combine(day, at, tzinfo=IST).timestamp()) * NS


def ist_time(ts_ns: int) -> str:
    """An event time as IST wall time with its offset, to the millisecond:
    ``2026-04-06T11:32:05.120+05:30``."""
    seconds, ns = divmod(ts_ns, NS)
    moment = datetime.fromtimestamp(seconds, IST).replace(microsecond=ns // 1000)
    return moment.isoformat(timespec="milliseconds")


def today_ist() -> date:
    return datetime.now(IST).date()
