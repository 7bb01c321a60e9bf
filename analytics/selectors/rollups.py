"""Reads of the rolled-up rows: which hours are rolled up and current, and their merged
response-time histograms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection

from analytics.live_keys import MINUTE_TTL
from analytics.models import (
    BotDailyMetrics,
    BotHourlyRollup,
    Organization,
    RollupDirtyDay,
    RollupDirtyHour,
)
from analytics.selectors.periods import bucket_firsts
from analytics.timeutil import HOUR, floor_hour, org_day_bounds


@dataclass
class Totals:
    """Message counts (and response histograms) summed over rolled-up hours or live minutes."""

    inbound: int = 0
    outbound: int = 0
    ok: int = 0
    fail: int = 0
    fb: int = 0
    rt_n: int = 0
    rt_sum: int = 0
    hists: list = None  # histograms to merge with sketch.merge

    def add(self, inbound=0, outbound=0, ok=0, fail=0, fb=0, rt_n=0, rt_sum=0, hist=None):
        self.inbound += inbound
        self.outbound += outbound
        self.ok += ok
        self.fail += fail
        self.fb += fb
        self.rt_n += rt_n
        self.rt_sum += rt_sum
        if hist:
            self.hists = [*(self.hists or ()), hist]


def rollup_pending_hours(*, org_id: int, start: datetime, end: datetime) -> list[datetime]:
    """Hours in [start, end) with data not rolled up yet: charts show them as gaps."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT hour FROM {RollupDirtyHour._meta.db_table} WHERE organization_id = %s
                AND hour >= %s AND hour < %s ORDER BY hour""",  # noqa: S608
            [org_id, start, end],
        )
        return [row[0].astimezone(UTC) for row in cursor.fetchall()]


def stale_hours(org: Organization, since: datetime, now: datetime) -> set[datetime]:
    """Rolled-up hours marked dirty again by late events, within the live keys' three days:
    those are read from the live minutes until the next hourly run rebuilds them."""
    start = max(floor_hour(since), floor_hour(now - timedelta(seconds=MINUTE_TTL)) + HOUR)
    return set(rollup_pending_hours(org_id=org.pk, start=start, end=floor_hour(now)))


def daily_hist_days(
    org: Organization, index: dict[datetime, int], hours: list[datetime]
) -> dict[object, int]:
    """Org-local days (-> bucket) whose every hour is among `hours`, in one bucket: their
    histogram can come from the day's BotDailyMetrics row instead of 23-25 hourly ones. Days
    whose bounds are not whole UTC hours (half-hour zones) would split hourly rows: left out."""
    wanted = set(hours)
    days = {}
    for day in sorted({h.astimezone(org.tz).date() for h in hours}):
        first, last = org_day_bounds(org, day)
        day_hours = [first + i * HOUR for i in range(round((last - first) / HOUR))]
        whole = first.minute == 0 and all(h in wanted for h in day_hours)
        if whole and len({index[h] for h in day_hours}) == 1:
            days[day] = index[first]
    return days


def rollup_bucket_hists(
    org: Organization, bot_ids: list[int], index: dict[datetime, int], hours: list[datetime]
) -> dict[int, dict[int, int]]:
    """The response histograms of the rolled-up `hours`, summed per bucket (key-wise, as
    sketch.merge): a whole org-local day from its daily row (unless the day is marked for
    rebuilding, e.g. after late data), other hours from the hourly rows — 30 rows for 30 days
    instead of 720."""
    if not hours:
        return {}
    days = daily_hist_days(org, index, hours)
    thresholds = bucket_firsts(index)
    first, last = min(hours), max(hours)
    wanted = set(hours)  # the rolled-up hours asked for; others in between are left out
    skipped = [h for h in index if first <= h <= last and h not in wanted]
    daily, hourly = BotDailyMetrics._meta.db_table, BotHourlyRollup._meta.db_table
    dirty = RollupDirtyDay._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH d AS (
                SELECT x.bot_id, x.date, x.response_hist, b.idx
                FROM {daily} x JOIN unnest(%(days)s::date[], %(day_idx)s::int[]) AS b(date, idx)
                    ON b.date = x.date
                WHERE x.organization_id = %(org)s AND x.bot_id = ANY(%(bots)s)
                  AND x.response_hist IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM {dirty} y
                                  WHERE y.organization_id = %(org)s AND y.date = x.date)
            ), hists AS (
                SELECT idx, response_hist FROM d
                UNION ALL
                SELECT width_bucket(r.hour, %(thresholds)s::timestamptz[]) - 1, r.response_hist
                FROM {hourly} r
                WHERE r.organization_id = %(org)s AND r.bot_id = ANY(%(bots)s)
                  AND r.hour >= %(first)s AND r.hour <= %(last)s
                  AND r.hour <> ALL(%(skipped)s::timestamptz[])
                  AND NOT EXISTS (SELECT 1 FROM d WHERE d.bot_id = r.bot_id
                                  AND d.date = (r.hour AT TIME ZONE %(tz)s)::date)
            )
            SELECT idx, h.key::int, sum(h.value::bigint)
            FROM hists CROSS JOIN LATERAL jsonb_each_text(hists.response_hist) AS h(key, value)
            GROUP BY 1, 2
            """,  # noqa: S608 - the table names are ours
            {
                "org": org.pk,
                "bots": bot_ids,
                "days": list(days),
                "day_idx": list(days.values()),
                "thresholds": thresholds,
                "skipped": skipped,
                "first": first,
                "last": last,
                "tz": org.timezone,
            },
        )
        merged: dict[int, dict[int, int]] = {}
        for idx, bucket, count in cursor.fetchall():
            merged.setdefault(idx, {})[bucket] = int(count)
    return merged
