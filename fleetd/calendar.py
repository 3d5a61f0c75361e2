"""Japan time and business days, as the service states its deadlines.

Business days skip Saturdays, Sundays, Japanese public holidays (the `holidays` package)
and the company's year-end closure (29 Dec to 3 Jan unless configured otherwise).
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import holidays

from fleetd.clock import JST

MONTH_END_STOP = dt.time(23, 59)


@functools.cache
def _japan() -> Any:
    """The `holidays` package's class of Japan's public holidays, loaded alone.

    `holidays.country_holidays("JP")` imports `holidays.countries`, which imports every
    country's module (some 250 of them, several MB held for as long as the daemon runs) to
    use one; this loads the module of Japan only. Should the package lay its files out
    differently one day, the ordinary look-up is used."""
    path = Path(holidays.__file__).parent / "countries" / "japan.py"
    spec = importlib.util.spec_from_file_location("holidays.countries.japan", path)
    if spec is None or spec.loader is None or not path.is_file():
        return functools.partial(holidays.country_holidays, "JP")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Japan


def japanese_holidays(year: int) -> holidays.HolidayBase:
    """Japan's public holidays of `year` with their names, as `holidays.country_holidays("JP")`
    gives them."""
    result: holidays.HolidayBase = _japan()(years=year)
    return result


@functools.lru_cache(maxsize=64)
def _japanese_holidays(year: int) -> frozenset[dt.date]:
    return frozenset(japanese_holidays(year))


def holiday_name(day: dt.date) -> str | None:
    name = japanese_holidays(day.year).get(day)
    return str(name) if name else None


@dataclass(frozen=True)
class BusinessCalendar:
    """Which days count as business days; the closure is (month, day) to (month, day)."""

    closure_start: tuple[int, int] = (12, 29)
    closure_end: tuple[int, int] = (1, 3)

    @classmethod
    def parse_closure(cls, text: str) -> BusinessCalendar:
        """``12-29..01-03``: the year-end closure, as settings give it."""
        try:
            start, end = (part.strip() for part in text.split(".."))
            sm, sd = (int(x) for x in start.split("-"))
            em, ed = (int(x) for x in end.split("-"))
            dt.date(2000, sm, sd)  # both ends must be real dates
            dt.date(2000, em, ed)
        except ValueError:
            raise ValueError(
                f'year-end closure "{text}": expected MM-DD..MM-DD, e.g. 12-29..01-03'
            ) from None
        return cls((sm, sd), (em, ed))

    def in_closure(self, day: dt.date) -> bool:
        key = (day.month, day.day)
        if self.closure_start <= self.closure_end:
            return self.closure_start <= key <= self.closure_end
        return key >= self.closure_start or key <= self.closure_end

    def is_business_day(self, day: dt.date) -> bool:
        return (
            day.weekday() < 5
            and day not in _japanese_holidays(day.year)
            and not self.in_closure(day)
        )

    def add_business_days(self, day: dt.date, count: int) -> dt.date:
        """The business day `count` business days after `day` (which need not be one)."""
        if count < 0:
            raise ValueError("count is a number of business days from 0 up")
        current = day
        while count:
            current += dt.timedelta(days=1)
            if self.is_business_day(current):
                count -= 1
        return current

    def business_days_later(self, when: dt.datetime, count: int, at: dt.time) -> dt.datetime:
        """`count` business days after the JST date of `when`, at `at` JST (UTC-aware)."""
        day = self.add_business_days(when.astimezone(JST).date(), count)
        return dt.datetime.combine(day, at, tzinfo=JST).astimezone(dt.UTC)


def last_day_of_month(year: int, month: int) -> dt.date:
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def month_end_stop_at(year: int, month: int) -> dt.datetime:
    """23:59:00 JST on the last day of the month: when V4 accounts stop (UTC-aware)."""
    day = last_day_of_month(year, month)
    return dt.datetime.combine(day, MONTH_END_STOP, tzinfo=JST).astimezone(dt.UTC)


def parse_month(text: str) -> tuple[int, int]:
    """``2026-11`` -> (2026, 11), with an error that says the expected form."""
    try:
        year, month = (int(x) for x in text.split("-"))
        dt.date(year, month, 1)
    except ValueError:
        raise ValueError(f'month "{text}": expected YYYY-MM, e.g. 2026-11') from None
    return year, month


def jst_month(when: dt.datetime) -> tuple[int, int]:
    local = when.astimezone(JST)
    return local.year, local.month
