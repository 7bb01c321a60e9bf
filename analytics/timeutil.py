"""Time maths shared by rollups, selectors and insights: UTC hours and org-local days. Pure."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol

from django.utils import timezone

HOUR = timedelta(hours=1)


class HasTimeZone(Protocol):
    """An organization, or anything else with the time zone its days are counted in."""

    @property
    def tz(self) -> tzinfo: ...


def floor_hour(at: datetime) -> datetime:
    """The UTC hour holding `at`."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def org_day_start(org: HasTimeZone, now: datetime | None = None) -> datetime:
    """Midnight today in the org's time zone, as an aware datetime."""
    local = (now or timezone.now()).astimezone(org.tz)
    return datetime.combine(local.date(), time.min, tzinfo=org.tz)


def org_day_bounds(org: HasTimeZone, day: date) -> tuple[datetime, datetime]:
    """[start, end) of an org-local day in UTC: 23 or 25 hours on DST change days."""
    start = datetime.combine(day, time.min, tzinfo=org.tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=org.tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def hours_between(first: datetime, last: datetime) -> list[datetime]:
    """Whole UTC hours from `first` (a whole hour) up to, not including, `last`."""
    return [first + i * HOUR for i in range(math.ceil((last - first) / HOUR))]
