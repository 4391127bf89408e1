"""Chilean business days, for the dates promised to a customer.

The SII certification "can take up to 7 business days", so the date a
customer is told is counted on Chile's calendar, in Santiago's time zone:

- A business day is Monday to Friday and not a national public holiday of
  Chile, as the ``holidays`` library knows them (movable holidays and the
  bridge days fixed by law included). Regional holidays and the banks'
  31 December holiday are not public holidays of the whole country, so
  they count as business days.
- Counting starts on the next business day after the local date of the
  start, whether that date is a business day or not: a certification
  started on a Friday afternoon, or on a Saturday, counts the Monday as its
  first business day. The day of the start is already partly spent, and one
  rule for every start keeps the promise the same at 9:00 and at 23:00.
- The local date is Santiago's: an instant is converted to
  ``America/Santiago`` before its date is taken, so 02:30 UTC on a Tuesday
  is still Monday for the customer. Counting is done on dates, never on
  instants, so daylight saving changes cannot move a result.

``format_date_es`` writes a date as a Chilean reader expects it, for instance
``martes 22 de septiembre de 2026``, without depending on the system locale.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import holidays

__all__ = [
    "SANTIAGO",
    "ChileanCalendar",
    "expected_date",
    "format_date_es",
]

#: The time zone in which a customer's dates are counted.
SANTIAGO: Final = ZoneInfo("America/Santiago")

_ONE_DAY: Final = timedelta(days=1)

# Monday is 0 for date.weekday(); Saturday and Sunday are 5 and 6.
_SATURDAY: Final = 5

_WEEKDAYS: Final = (
    "lunes",
    "martes",
    "miércoles",
    "jueves",
    "viernes",
    "sábado",
    "domingo",
)

_MONTHS: Final = (
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
)


def _santiago_date(moment: datetime) -> date:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            "a naive datetime has no place on the calendar; "
            "give it a time zone (for instance UTC)"
        )
    return moment.astimezone(SANTIAGO).date()


class ChileanCalendar:
    """Chile's business days, with each year's holidays loaded once.

    Holiday names are in Spanish, whatever the system locale, because they
    may be shown to a customer. An instance may be shared: it only ever
    adds years to its cache.
    """

    def __init__(self) -> None:
        self._years: dict[int, holidays.HolidayBase] = {}

    def _holidays(self, year: int) -> holidays.HolidayBase:
        calendar = self._years.get(year)
        if calendar is None:
            calendar = holidays.country_holidays("CL", years=year, language="es")
            self._years[year] = calendar
        return calendar

    def holiday_name(self, day: date) -> str | None:
        """The Spanish name of the public holiday on ``day``, or ``None``.

        Two holidays on one date come back as one string, their names
        separated by ``"; "``, as the ``holidays`` library joins them.
        """
        name: str | None = self._holidays(day.year).get(day)
        return name

    def is_business_day(self, day: date) -> bool:
        """Whether ``day`` is Monday to Friday and not a public holiday."""
        return day.weekday() < _SATURDAY and self.holiday_name(day) is None

    def add_business_days(self, start: datetime, days: int) -> date:
        """The Santiago date on which the ``days``-th business day falls.

        ``start`` must be timezone-aware; its date is taken in Santiago and
        the first business day counted is the next one after that date,
        even when that date is itself a business day. ``days=0`` gives back
        the Santiago date of ``start`` unchanged. A negative ``days`` and a
        naive ``start`` raise ``ValueError``.
        """
        if days < 0:
            raise ValueError(f"business days cannot be negative, got {days}")

        day = _santiago_date(start)

        remaining = days
        while remaining:
            day += _ONE_DAY
            if self.is_business_day(day):
                remaining -= 1
        return day

    def business_days_between(self, start: date, end: date) -> int:
        """The business days after ``start`` up to and including ``end``.

        It is 0 when both are the same date, and so the inverse of
        ``add_business_days``: counting from a start's Santiago date to the
        date it returns gives back the number of days added. When ``end``
        comes before ``start`` the answer is the same count with a minus
        sign (business days after ``end`` up to and including ``start``),
        so a promised date already past shows how late it is.
        """
        if end < start:
            return -self.business_days_between(end, start)

        count = 0
        day = start
        while day < end:
            day += _ONE_DAY
            if self.is_business_day(day):
                count += 1
        return count


_DEFAULT_CALENDAR: Final = ChileanCalendar()


def expected_date(
    started_at: datetime,
    business_days: int,
    *,
    calendar: ChileanCalendar | None = None,
) -> date:
    """The Santiago date promised for something that takes ``business_days``.

    The rules are those of ``ChileanCalendar.add_business_days``; without a
    ``calendar`` a shared module-level one is used.
    """
    chosen = _DEFAULT_CALENDAR if calendar is None else calendar
    return chosen.add_business_days(started_at, business_days)


def format_date_es(day: date) -> str:
    """``day`` in Chilean Spanish: ``"martes 22 de septiembre de 2026"``."""
    weekday = _WEEKDAYS[day.weekday()]
    month = _MONTHS[day.month - 1]
    return f"{weekday} {day.day} de {month} de {day.year}"
