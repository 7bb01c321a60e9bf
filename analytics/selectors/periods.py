"""Periods of the charts and summaries (24 hours, 7 days, 30 days) and their buckets: UTC hours
grouped by the org's clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.utils import timezone

from analytics.models import Organization
from analytics.timeutil import HOUR, floor_hour


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    bucket_hours: int  # 1 or 3 (aligned to the org's clock) or 24 (a calendar day, org time zone)
    buckets: int


PERIODS = {
    p.key: p
    for p in (
        Period("24h", "Last 24 hours", 1, 24),
        Period("7d", "Last 7 days", 3, 56),
        Period("30d", "Last 30 days", 24, 30),
    )
}
DEFAULT_PERIOD = PERIODS["24h"]


PERIOD_LENGTHS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def period_get(key: str | None) -> Period:
    """The period named `key` ("24h", "7d" or "30d"); the default period for anything else."""
    return PERIODS.get(key or "", DEFAULT_PERIOD)


def bucket_starts(
    org: Organization, period: Period, now: datetime
) -> tuple[list[datetime], dict[datetime, int]]:
    """Bucket starts (org time zone, oldest first) and the bucket index of each UTC hour."""
    tz, current = org.tz, floor_hour(now)
    span = (period.buckets + 1) * period.bucket_hours + 2  # a spare bucket and DST slack
    keyed: dict[object, list[datetime]] = {}
    for i in range(span - 1, -1, -1):
        hour = current - i * HOUR
        local = hour.astimezone(tz)
        if period.bucket_hours == 1:
            key = hour  # two UTC hours can share a local wall-clock hour (DST ends)
        elif period.bucket_hours == 24:
            key = local.date()
        else:
            key = (local.date(), local.hour // period.bucket_hours)
        keyed.setdefault(key, []).append(hour)
    starts, index = [], {}
    for key in list(keyed)[-period.buckets :]:
        hours = keyed[key]
        if period.bucket_hours == 1:
            start = key.astimezone(tz)
        elif period.bucket_hours == 24:
            start = datetime.combine(key, time.min, tzinfo=tz)
        else:
            start = datetime.combine(key[0], time(key[1] * period.bucket_hours), tzinfo=tz)
        for hour in hours:
            index[hour] = len(starts)
        starts.append(start)
    return starts, index


def bucket_firsts(index: dict[datetime, int]) -> list[datetime]:
    """The first UTC hour of each bucket, in bucket order: with SQL's width_bucket() they map an
    hour to its bucket without sending every hour of the period."""
    firsts: dict[int, datetime] = {}
    for hour, idx in index.items():
        if idx not in firsts or hour < firsts[idx]:
            firsts[idx] = hour
    return [firsts[i] for i in range(len(firsts))]


@dataclass(frozen=True)
class Bucket:
    start: datetime  # org time zone
    end: datetime  # the next bucket's start (or now, for the last one)


def period_buckets(
    *, org: Organization, period: Period | str, now: datetime | None = None
) -> tuple[list[Bucket], dict[datetime, int]]:
    """The period's buckets (oldest first) and the bucket index of each UTC hour in them."""
    period = period if isinstance(period, Period) else period_get(period)
    now = now or timezone.now()
    starts, index = bucket_starts(org, period, now)
    ends = [*starts[1:], now]
    return [Bucket(s, e) for s, e in zip(starts, ends, strict=True)], index
