"""Chart series: hourly rollups for completed hours, live minute counters for the rest.

A completed UTC hour the org has BotHourlyRollup rows for is read from those rows (histograms
merged, never a percentile over raw messages); every other minute of the range (the current
hour, a recent hour not rolled up yet) comes from the live minute keys in Redis, which keep
three days. An hour found in neither is a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Q, Sum
from django.utils import timezone

from analytics import sketch
from analytics.live_keys import MINUTE_TTL, bot_key, epoch_minute, org_key
from analytics.models import BotHourlyRollup, Organization
from analytics.selectors.bots import scoped_bot_ids
from analytics.selectors.live import live_sums
from analytics.selectors.periods import Period, bucket_firsts, bucket_starts, period_get
from analytics.selectors.rollups import Totals, rollup_bucket_hists, stale_hours
from analytics.timeutil import floor_hour


@dataclass(frozen=True)
class ResponseTimePoint:
    start: datetime  # start of the bucket, in the org's time zone
    responses: int  # replies that carried a response time
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class VolumePoint:
    start: datetime
    inbound: int
    outbound: int


def _rolled_up_hours(
    org: Organization, all_ids: list[int], wanted: list[int] | None, first, last, now
) -> dict[datetime, Totals]:
    """Completed hours (first..last) the org has rollup rows for, with the wanted bots' counts."""
    mine = Q() if wanted is None else Q(bot_id__in=wanted)
    rows = (
        BotHourlyRollup.objects.for_org(org)
        .filter(bot_id__in=all_ids, hour__gte=first, hour__lte=last, hour__lt=floor_hour(now))
        .values("hour")
        .annotate(
            inbound=Sum("messages_in", filter=mine, default=0),
            outbound=Sum("messages_out", filter=mine, default=0),
            ok=Sum("successes", filter=mine, default=0),
            fail=Sum("failures", filter=mine, default=0),
            fb=Sum("fallbacks", filter=mine, default=0),
            rt_n=Sum("response_count", filter=mine, default=0),
            rt_sum=Sum("response_sum_ms", filter=mine, default=0),
        )
    )
    rolled = {row.pop("hour"): Totals(**row) for row in rows}
    for hour in stale_hours(org, first, now) if rolled else ():
        rolled.pop(hour, None)
    return rolled


def _bucket_sums(
    org: Organization, bot_ids: list[int], index: dict[datetime, int], first, last
) -> list[tuple]:
    """(bucket, inbound, outbound, ok, fail, fallback, responses, response ms) of the rolled-up
    hours first..last, summed per bucket in SQL."""
    table = BotHourlyRollup._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT width_bucket(hour, %(thresholds)s::timestamptz[]) - 1, sum(messages_in),
                sum(messages_out), sum(successes), sum(failures), sum(fallbacks),
                sum(response_count), sum(response_sum_ms)
            FROM {table}
            WHERE organization_id = %(org)s AND bot_id = ANY(%(bots)s)
              AND hour >= %(first)s AND hour <= %(last)s
            GROUP BY 1
            """,  # noqa: S608 - the table name is ours
            {
                "thresholds": bucket_firsts(index),
                "org": org.pk,
                "bots": bot_ids,
                "first": first,
                "last": last,
            },
        )
        return cursor.fetchall()


def _bucket_totals(
    *, org: Organization, period: Period, bots, now: datetime | None, hists: bool, live: bool
) -> tuple[list[datetime], list[Totals]]:
    now = now or timezone.now()
    starts, index = bucket_starts(org, period, now)
    all_ids, wanted = scoped_bot_ids(org, bots)
    hours = sorted(index)
    ids = all_ids if wanted is None else wanted
    totals = [Totals() for _ in starts]
    # Hours older than the live minute keys can only come from rollups: summed per bucket in
    # SQL. Recent ones are read hour by hour, to fill those not rolled up from the live minutes.
    live_from = floor_hour(now - timedelta(seconds=MINUTE_TTL))
    older = [h for h in hours if h < live_from]
    recent = [h for h in hours if h >= live_from]
    rolled = _rolled_up_hours(org, all_ids, wanted, recent[0], recent[-1], now) if recent else {}
    for hour, t in rolled.items():
        if hour in index:
            totals[index[hour]].add(t.inbound, t.outbound, t.ok, t.fail, t.fb, t.rt_n, t.rt_sum)
    if older:
        for idx, *counts in _bucket_sums(org, ids, index, older[0], older[-1]):
            totals[idx].add(*counts)
    if hists:
        rolled_hours = older + [h for h in rolled if h in index]
        for idx, hist in rollup_bucket_hists(org, ids, index, rolled_hours).items():
            totals[idx].add(hist=hist)
    horizon = epoch_minute(now) - MINUTE_TTL // 60
    current = epoch_minute(now)
    minutes = [
        m
        for hour in hours
        if hour not in rolled
        for m in range(epoch_minute(hour), epoch_minute(hour) + 60)
        if horizon < m <= current
    ]
    if live and minutes and (wanted is None or wanted):
        sources = (
            [lambda *parts: org_key(org.pk, *parts)]
            if wanted is None
            else [lambda *parts, b=b: bot_key(org.pk, b, *parts) for b in wanted]
        )
        groups: dict[int, list] = {}
        for minute in minutes:
            hour = datetime.fromtimestamp(minute * 60, tz=UTC).replace(minute=0)
            groups.setdefault(index[hour], []).extend(
                (key("m", minute), key("h", minute) if hists else None) for key in sources
            )
        for idx, (counts, hist) in zip(groups, live_sums(list(groups.values())), strict=True):
            totals[idx].add(*counts, hist=hist)
    return starts, totals


def response_time_series(
    *,
    org: Organization,
    period: Period | str,
    bots=None,
    now: datetime | None = None,
    live: bool = True,
) -> list[ResponseTimePoint]:
    """Avg, p50, p95 and p99 response time per bucket of the period (org or the given bots);
    `live=False` reads the rolled-up hours only (when Redis is unreachable)."""
    return period_series(org=org, period=period, bots=bots, now=now, live=live)[0]


def message_volume_series(
    *,
    org: Organization,
    period: Period | str,
    bots=None,
    now: datetime | None = None,
    live: bool = True,
) -> list[VolumePoint]:
    """Inbound and outbound messages per bucket of the period (org or the given bots);
    `live=False` reads the rolled-up hours only (when Redis is unreachable)."""
    period = period if isinstance(period, Period) else period_get(period)
    starts, totals = _bucket_totals(
        org=org, period=period, bots=bots, now=now, hists=False, live=live
    )
    return [VolumePoint(s, t.inbound, t.outbound) for s, t in zip(starts, totals, strict=True)]


def period_series(
    *,
    org: Organization,
    period: Period | str,
    bots=None,
    now: datetime | None = None,
    live: bool = True,
) -> tuple[list[ResponseTimePoint], list[VolumePoint]]:
    """response_time_series() and message_volume_series() from one read (the dashboard's pair)."""
    period = period if isinstance(period, Period) else period_get(period)
    starts, totals = _bucket_totals(
        org=org, period=period, bots=bots, now=now, hists=True, live=live
    )
    response, volume = [], []
    for start, t in zip(starts, totals, strict=True):
        p50, p95, p99 = sketch.quantiles(sketch.merge(t.hists or ()), (0.5, 0.95, 0.99))
        avg = t.rt_sum / t.rt_n if t.rt_n else None
        response.append(ResponseTimePoint(start, t.rt_n, avg, p50, p95, p99))
        volume.append(VolumePoint(start, t.inbound, t.outbound))
    return response, volume
