"""Business days on Chile's calendar, against the real ``holidays`` library.

Every expected date below was counted by hand on a calendar; the comment
next to it shows the count, with "(n)" for the n-th business day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from haulmer_onboarding.business_days import (
    SANTIAGO,
    ChileanCalendar,
    expected_date,
    format_date_es,
)


@pytest.fixture
def calendar() -> ChileanCalendar:
    return ChileanCalendar()


def at_santiago(year: int, month: int, day: int, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, 0, tzinfo=SANTIAGO)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 9, 17), True),  # Thursday before Fiestas Patrias
        (date(2026, 9, 18), False),  # Día de la Independencia, a Friday
        (date(2026, 9, 19), False),  # Saturday, and Glorias del Ejército
        (date(2026, 9, 20), False),  # Sunday
        (date(2026, 12, 31), True),  # only the banks close
        (date(2027, 1, 1), False),  # Año Nuevo, a Friday
        (date(2026, 4, 3), False),  # Viernes Santo, a movable holiday
        (date(2026, 6, 29), False),  # San Pedro y San Pablo, moved to Monday
    ],
)
def test_is_business_day(calendar: ChileanCalendar, day: date, expected: bool) -> None:
    assert calendar.is_business_day(day) is expected


def test_holiday_name_is_spanish_or_none(calendar: ChileanCalendar) -> None:
    assert calendar.holiday_name(date(2026, 9, 18)) == "Día de la Independencia"
    assert calendar.holiday_name(date(2026, 12, 25)) == "Navidad"
    assert calendar.holiday_name(date(2026, 9, 17)) is None


@pytest.mark.parametrize(
    "start",
    [
        at_santiago(2026, 3, 6),  # Friday
        at_santiago(2026, 3, 7),  # Saturday
        at_santiago(2026, 3, 8),  # Sunday
    ],
)
def test_weekends_are_skipped(calendar: ChileanCalendar, start: datetime) -> None:
    # Friday, Saturday or Sunday 6-8 March 2026: the first business day
    # after any of them is Monday 9 March (1).
    assert calendar.add_business_days(start, 1) == date(2026, 3, 9)


def test_a_week_of_business_days_spans_a_weekend(calendar: ChileanCalendar) -> None:
    # Wednesday 4 March 2026: Thu 5 (1), Fri 6 (2), Mon 9 (3), Tue 10 (4),
    # Wed 11 (5).
    assert calendar.add_business_days(at_santiago(2026, 3, 4), 5) == date(2026, 3, 11)


def test_certification_started_the_friday_before_fiestas_patrias_2026(
    calendar: ChileanCalendar,
) -> None:
    # In 2026, 18 September (Independencia) is a Friday and 19 September
    # (Glorias del Ejército) a Saturday. No bridge day is declared for 2026:
    # the library keeps Thursday 17 September a working day (it does add one
    # in 2027, see below).
    assert calendar.is_business_day(date(2026, 9, 17))
    assert calendar.holiday_name(date(2026, 9, 19)) == (
        "Día de las Glorias del Ejército"
    )

    # Started Friday 11 September: Mon 14 (1), Tue 15 (2), Wed 16 (3),
    # Thu 17 (4), Fri 18 holiday, Sat 19 holiday and weekend, Sun 20,
    # Mon 21 (5), Tue 22 (6), Wed 23 (7).
    started = at_santiago(2026, 9, 11, hour=15)
    assert expected_date(started, 7, calendar=calendar) == date(2026, 9, 23)


def test_started_the_friday_before_a_monday_and_tuesday_holiday(
    calendar: ChileanCalendar,
) -> None:
    # In 2028, 18 September is a Monday and 19 September a Tuesday.
    assert calendar.holiday_name(date(2028, 9, 18)) is not None
    assert calendar.holiday_name(date(2028, 9, 19)) is not None

    # Started Friday 15 September 2028: Sat 16, Sun 17, Mon 18 holiday,
    # Tue 19 holiday, Wed 20 (1), Thu 21 (2), Fri 22 (3), Mon 25 (4),
    # Tue 26 (5), Wed 27 (6), Thu 28 (7).
    started = at_santiago(2028, 9, 15)
    assert expected_date(started, 7, calendar=calendar) == date(2028, 9, 28)


def test_started_the_day_before_a_thursday_and_friday_holiday(
    calendar: ChileanCalendar,
) -> None:
    # In 2025, 18 September is a Thursday and 19 September a Friday.
    # Started Wednesday 17 September: Thu 18 and Fri 19 holidays, Sat 20,
    # Sun 21, Mon 22 (1), Tue 23 (2), Wed 24 (3), Thu 25 (4), Fri 26 (5),
    # Mon 29 (6), Tue 30 (7).
    started = at_santiago(2025, 9, 17)
    assert expected_date(started, 7, calendar=calendar) == date(2025, 9, 30)


def test_the_2027_bridge_day_is_a_holiday(calendar: ChileanCalendar) -> None:
    # In 2027, 18 September falls on a Saturday, and the library lists
    # Friday 17 September as an extra Fiestas Patrias holiday (a bridge day
    # set by law), so the count must skip it.
    assert calendar.holiday_name(date(2027, 9, 17)) == "Fiestas Patrias"

    # Started Thursday 16 September 2027: Fri 17 holiday, Sat 18, Sun 19,
    # Mon 20 (1), Tue 21 (2), Wed 22 (3).
    started = at_santiago(2027, 9, 16)
    assert calendar.add_business_days(started, 3) == date(2027, 9, 22)


def test_the_count_crosses_the_new_year(calendar: ChileanCalendar) -> None:
    # Started Wednesday 30 December 2026: Thu 31 (1), Fri 1 January 2027
    # holiday, Sat 2, Sun 3, Mon 4 (2), Tue 5 (3), Wed 6 (4), Thu 7 (5),
    # Fri 8 (6), Mon 11 (7).
    started = at_santiago(2026, 12, 30)
    assert expected_date(started, 7, calendar=calendar) == date(2027, 1, 11)


def test_a_late_utc_evening_counts_from_the_santiago_date(
    calendar: ChileanCalendar,
) -> None:
    # 02:30 UTC on Tuesday 3 March 2026 is 23:30 on Monday 2 March in
    # Santiago (UTC-3, summer time). From Monday 2: Tue 3 (1), Wed 4 (2),
    # Thu 5 (3), Fri 6 (4), Mon 9 (5). Counting from the UTC date would
    # have given Tuesday 10.
    started = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)
    assert expected_date(started, 5, calendar=calendar) == date(2026, 3, 9)


def test_any_time_zone_is_converted_to_santiago(calendar: ChileanCalendar) -> None:
    # 09:00 on Saturday 7 March 2026 in UTC+9 is 00:00 UTC, which is 21:00
    # on Friday 6 March in Santiago: Mon 9 (1).
    started = datetime(2026, 3, 7, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    assert calendar.add_business_days(started, 1) == date(2026, 3, 9)


def test_counting_across_the_end_of_summer_time(calendar: ChileanCalendar) -> None:
    # Santiago leaves summer time on the night of Saturday 4 April 2026.
    # Started Thursday 2 April at 23:30 (UTC-3): Fri 3 Viernes Santo,
    # Sat 4 Sábado Santo, Sun 5, Mon 6 (1), Tue 7 (2), Wed 8 (3).
    started = datetime(2026, 4, 2, 23, 30, tzinfo=SANTIAGO)
    assert calendar.add_business_days(started, 3) == date(2026, 4, 8)


def test_counting_across_the_start_of_summer_time(
    calendar: ChileanCalendar,
) -> None:
    # Santiago enters summer time on the night of Saturday 5 September 2026.
    # Started Friday 4 September at 23:30 (UTC-4): Sat 5, Sun 6, Mon 7 (1).
    # Adding 72 hours of UTC time would have landed on Tuesday 8 instead.
    started = datetime(2026, 9, 4, 23, 30, tzinfo=SANTIAGO)
    assert calendar.add_business_days(started, 1) == date(2026, 9, 7)


@pytest.mark.parametrize(
    ("instant", "local_date"),
    [
        # The repeated hour of 4 April 2026: 23:30 happens at UTC-3 and again
        # at UTC-4; both are Saturday. An hour later it is Sunday.
        (datetime(2026, 4, 5, 2, 30, tzinfo=UTC), date(2026, 4, 4)),
        (datetime(2026, 4, 5, 3, 30, tzinfo=UTC), date(2026, 4, 4)),
        (datetime(2026, 4, 5, 4, 30, tzinfo=UTC), date(2026, 4, 5)),
        # The skipped hour of 6 September 2026: 03:30 UTC is 23:30 Saturday
        # at UTC-4; 04:30 UTC is already 01:30 Sunday at UTC-3.
        (datetime(2026, 9, 6, 3, 30, tzinfo=UTC), date(2026, 9, 5)),
        (datetime(2026, 9, 6, 4, 30, tzinfo=UTC), date(2026, 9, 6)),
    ],
)
def test_the_local_date_around_a_clock_change(
    calendar: ChileanCalendar, instant: datetime, local_date: date
) -> None:
    assert calendar.add_business_days(instant, 0) == local_date


def test_a_naive_datetime_is_refused(calendar: ChileanCalendar) -> None:
    naive = datetime(2026, 9, 11, 10, 0)
    with pytest.raises(ValueError, match="naive"):
        calendar.add_business_days(naive, 7)
    with pytest.raises(ValueError, match="naive"):
        expected_date(naive, 7)


def test_negative_business_days_are_refused(calendar: ChileanCalendar) -> None:
    with pytest.raises(ValueError, match="negative"):
        calendar.add_business_days(at_santiago(2026, 9, 11), -1)


def test_expected_date_works_without_a_calendar() -> None:
    # Same count as the Fiestas Patrias 2026 case: Wednesday 23 September.
    started = datetime(2026, 9, 11, 18, 0, tzinfo=UTC)
    assert expected_date(started, 7) == date(2026, 9, 23)


@pytest.mark.parametrize(
    ("start", "end", "count"),
    [
        # Same date: nothing after the start.
        (date(2026, 9, 11), date(2026, 9, 11), 0),
        # Friday to Monday: Mon 7 (1).
        (date(2026, 9, 4), date(2026, 9, 7), 1),
        # Saturday to Monday: Mon 7 (1).
        (date(2026, 9, 5), date(2026, 9, 7), 1),
        # Friday to Sunday: the weekend holds none.
        (date(2026, 9, 4), date(2026, 9, 6), 0),
        # Fri 11 to Wed 23 September 2026, counted above: 7.
        (date(2026, 9, 11), date(2026, 9, 23), 7),
        # Wed 30 December 2026 to Mon 11 January 2027, counted above: 7.
        (date(2026, 12, 30), date(2027, 1, 11), 7),
        # Backwards, the same count with a minus sign.
        (date(2026, 9, 23), date(2026, 9, 11), -7),
    ],
)
def test_business_days_between(
    calendar: ChileanCalendar, start: date, end: date, count: int
) -> None:
    assert calendar.business_days_between(start, end) == count


@pytest.mark.parametrize(
    ("day", "text"),
    [
        (date(2026, 9, 22), "martes 22 de septiembre de 2026"),
        (date(2026, 9, 23), "miércoles 23 de septiembre de 2026"),
        (date(2026, 9, 19), "sábado 19 de septiembre de 2026"),
        (date(2028, 2, 29), "martes 29 de febrero de 2028"),
        # The first day of each month of 2026, from Thursday 1 January by
        # the month lengths: every month and every weekday appears.
        (date(2026, 1, 1), "jueves 1 de enero de 2026"),
        (date(2026, 2, 1), "domingo 1 de febrero de 2026"),
        (date(2026, 3, 1), "domingo 1 de marzo de 2026"),
        (date(2026, 4, 1), "miércoles 1 de abril de 2026"),
        (date(2026, 5, 1), "viernes 1 de mayo de 2026"),
        (date(2026, 6, 1), "lunes 1 de junio de 2026"),
        (date(2026, 7, 1), "miércoles 1 de julio de 2026"),
        (date(2026, 8, 1), "sábado 1 de agosto de 2026"),
        (date(2026, 9, 1), "martes 1 de septiembre de 2026"),
        (date(2026, 10, 1), "jueves 1 de octubre de 2026"),
        (date(2026, 11, 1), "domingo 1 de noviembre de 2026"),
        (date(2026, 12, 1), "martes 1 de diciembre de 2026"),
    ],
)
def test_format_date_es(day: date, text: str) -> None:
    assert format_date_es(day) == text
