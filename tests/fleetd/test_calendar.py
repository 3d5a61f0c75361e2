"""Business days and the month-end deadline, in Japan time."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import holidays
import pytest

from fleetd.calendar import (
    BusinessCalendar,
    holiday_name,
    japanese_holidays,
    month_end_stop_at,
    parse_month,
)
from fleetd.clock import JST

CAL = BusinessCalendar()


@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [
        (2026, 11, dt.datetime(2026, 11, 30, 23, 59, tzinfo=JST)),
        (2027, 2, dt.datetime(2027, 2, 28, 23, 59, tzinfo=JST)),
        (2028, 2, dt.datetime(2028, 2, 29, 23, 59, tzinfo=JST)),
        (2026, 12, dt.datetime(2026, 12, 31, 23, 59, tzinfo=JST)),
    ],
)
def test_month_end_stop_is_2359_jst_on_the_last_day(
    year: int, month: int, expected: dt.datetime
) -> None:
    stop = month_end_stop_at(year, month)
    assert stop == expected
    assert stop.tzinfo == dt.UTC and stop.hour == 14 and stop.minute == 59


def test_weekends_and_public_holidays_are_not_business_days() -> None:
    assert not CAL.is_business_day(dt.date(2026, 11, 21))  # Saturday
    assert not CAL.is_business_day(dt.date(2026, 11, 23))  # Labour Thanksgiving Day, Monday
    assert holiday_name(dt.date(2026, 11, 23))
    assert CAL.is_business_day(dt.date(2026, 11, 24))


def test_two_business_days_after_a_friday_skip_the_weekend_and_the_holiday() -> None:
    # Fri 20 Nov 2026 -> Mon 23 is a holiday -> Tue 24, Wed 25.
    assert CAL.add_business_days(dt.date(2026, 11, 20), 2) == dt.date(2026, 11, 25)


def test_year_end_closure_is_skipped() -> None:
    # Mon 28 Dec 2026 + 2 business days: 29 Dec to 3 Jan closed, 4 Jan is a Monday.
    assert CAL.add_business_days(dt.date(2026, 12, 28), 1) == dt.date(2027, 1, 4)
    assert CAL.add_business_days(dt.date(2026, 12, 28), 2) == dt.date(2027, 1, 5)


def test_closure_is_configurable() -> None:
    short = BusinessCalendar.parse_closure("12-30..01-02")
    assert short.is_business_day(dt.date(2026, 12, 29))
    assert not short.is_business_day(dt.date(2026, 12, 30))
    with pytest.raises(ValueError, match=r"expected MM-DD\.\.MM-DD"):
        BusinessCalendar.parse_closure("end of year")


def test_business_days_later_lands_at_10_jst() -> None:
    swapped = dt.datetime(2026, 11, 20, 15, 0, tzinfo=JST)
    due = CAL.business_days_later(swapped, 2, dt.time(10, 0))
    assert due == dt.datetime(2026, 11, 25, 10, 0, tzinfo=JST)


def test_month_is_parsed_with_a_clear_error() -> None:
    assert parse_month("2026-11") == (2026, 11)
    with pytest.raises(ValueError, match="expected YYYY-MM"):
        parse_month("Nov 2026")


def test_japans_holidays_are_the_packages_with_the_same_names() -> None:
    for year in range(2000, 2041):
        ours = japanese_holidays(year)
        assert dict(ours) == dict(holidays.country_holidays("JP", years=year))
    assert holiday_name(dt.date(2026, 11, 3)) == "Culture Day"
    assert holiday_name(dt.date(2026, 11, 4)) is None


def test_japans_holidays_load_without_every_country() -> None:
    # a fresh interpreter: this process's tests may have imported holidays.countries already
    code = (
        "import sys, datetime; from fleetd.calendar import BusinessCalendar; "
        "assert not BusinessCalendar().is_business_day(datetime.date(2026, 11, 3)); "
        "print(sorted(m for m in sys.modules if m.startswith('holidays.countries')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
