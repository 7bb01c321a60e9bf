"""Period summaries and bucketed rollup series for the bot pages.

Totals over a range read the completed, rolled-up hours (BotHourlyRollup; durations are those
of the conversations that ended in the range).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Q, Sum
from django.utils import timezone

from analytics import sketch
from analytics.models import HOURLY_COUNTERS, BotHourlyRollup, Organization
from analytics.selectors.bots import scoped_bot_ids
from analytics.selectors.periods import Period, bucket_firsts, period_buckets
from analytics.selectors.rollups import rollup_bucket_hists
from analytics.timeutil import floor_hour, hours_between


def ratio(part, whole, scale: float = 100.0) -> float | None:
    return scale * float(part) / float(whole) if whole else None


@dataclass(frozen=True)
class PeriodSummary:
    """A bot's (or bots') figures over [start, end): counts, rates in percent, percentiles in ms."""

    start: datetime
    end: datetime
    conversations: int  # started in the range
    conversations_ended: int
    messages_in: int
    messages_out: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    success_rate: float | None
    error_rate: float | None
    fallback_rate: float | None
    kb_hit_rate: float | None
    handoff_rate: float | None  # of the conversations that ended
    csat_avg: float | None
    tokens: int
    cost_usd: float
    avg_duration_seconds: float | None
    calls: int
    bookings: int
    emails: int
    tasks: int
    revenue: float

    @property
    def messages(self) -> int:
        return self.messages_in + self.messages_out


def range_hist(org: Organization, bot_ids: list[int], start: datetime, end: datetime) -> dict:
    """The response-time histogram of the bots over [start, end) (whole hours)."""
    hours = hours_between(start, end)
    return rollup_bucket_hists(org, bot_ids, dict.fromkeys(hours, 0), hours).get(0, {})


def bot_period_summary(
    *, org: Organization, bots=None, start: datetime, end: datetime
) -> PeriodSummary:
    """Figures of the org's bots (or the given ones) over the rolled-up hours of [start, end)."""
    return bot_period_summaries(org=org, bots=bots, ranges=[(start, end)])[0]


def bot_period_summaries(
    *, org: Organization, bots=None, ranges: list[tuple[datetime, datetime]]
) -> list[PeriodSummary]:
    """bot_period_summary() of consecutive ranges (e.g. a period and the one before it) in one
    read: an hour on the boundary of two ranges counts in the later one."""
    all_ids, wanted = scoped_bot_ids(org, bots)
    ids = all_ids if wanted is None else wanted
    firsts = [floor_hour(start) for start, _end in ranges]
    lasts = [*firsts[1:], ranges[-1][1]]  # each range's hours: firsts[i] <= hour < lasts[i]
    sums = (
        BotHourlyRollup.objects.for_org(org)
        .filter(bot_id__in=ids, hour__gte=firsts[0], hour__lt=lasts[-1])
        .aggregate(
            **{
                f"{name}__{i}": Sum(name, default=0, filter=Q(hour__gte=first, hour__lt=last))
                for i, (first, last) in enumerate(zip(firsts, lasts, strict=True))
                for name in HOURLY_COUNTERS
            }
        )
    )
    index = {}
    for i, (first, last) in enumerate(zip(firsts, lasts, strict=True)):
        index.update(dict.fromkeys(hours_between(first, last), i))
    hists = rollup_bucket_hists(org, ids, index, list(index))
    return [
        _summary(
            start, end, {name: sums[f"{name}__{i}"] for name in HOURLY_COUNTERS}, hists.get(i, {})
        )
        for i, (start, end) in enumerate(ranges)
    ]


def _summary(start: datetime, end: datetime, sums: dict, hist: dict) -> PeriodSummary:
    p50, p95, p99 = sketch.quantiles(hist, (0.5, 0.95, 0.99))
    replies = sums["successes"] + sums["failures"] + sums["fallbacks"]
    return PeriodSummary(
        start=start,
        end=end,
        conversations=sums["conversations_started"],
        conversations_ended=sums["conversations_ended"],
        messages_in=sums["messages_in"],
        messages_out=sums["messages_out"],
        avg_ms=ratio(sums["response_sum_ms"], sums["response_count"], 1.0),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        success_rate=ratio(sums["successes"], replies),
        error_rate=ratio(sums["failures"], replies),
        fallback_rate=ratio(sums["fallbacks"], replies),
        kb_hit_rate=ratio(sums["kb_hits"], sums["kb_hits"] + sums["kb_misses"]),
        handoff_rate=ratio(sums["handoffs"], sums["conversations_ended"]),
        csat_avg=ratio(sums["csat_sum"], sums["csat_count"], 1.0),
        tokens=sums["tokens"],
        cost_usd=float(sums["cost_usd"]),
        avg_duration_seconds=ratio(sums["duration_sum_seconds"], sums["conversations_ended"], 1.0),
        calls=sums["calls"],
        bookings=sums["bookings"],
        emails=sums["emails"],
        tasks=sums["tasks"],
        revenue=float(sums["revenue"]),
    )


@dataclass(frozen=True)
class RollupPoint:
    start: datetime
    end: datetime
    replies: int
    success_rate: float | None
    kb_hit_rate: float | None
    # None where no hour of the bucket is rolled up: a gap on the chart, not a zero.
    tokens: int | None
    cost_usd: float | None
    handoffs: int | None
    conversations_ended: int | None
    avg_duration_seconds: float | None
    calls: int | None
    bookings: int | None
    emails: int | None
    tasks: int | None
    revenue: float | None


def bot_rollup_series(
    *, org: Organization, period: Period | str, bots=None, now: datetime | None = None
) -> list[RollupPoint]:
    """Success and KB-hit rate, tokens, cost, handoffs, durations and AI-employee work per bucket
    of the period, from the rolled-up hours."""
    now = now or timezone.now()
    buckets, index = period_buckets(org=org, period=period, now=now)
    all_ids, wanted = scoped_bot_ids(org, bots)
    ids = all_ids if wanted is None else wanted
    names = (
        "successes",
        "failures",
        "fallbacks",
        "kb_hits",
        "kb_misses",
        "tokens",
        "cost_usd",
        "handoffs",
        "conversations_ended",
        "duration_sum_seconds",
        "calls",
        "bookings",
        "emails",
        "tasks",
        "revenue",
    )
    acc = [dict.fromkeys(names, 0) for _ in buckets]
    seen = [False] * len(buckets)  # buckets with a rolled-up hour
    thresholds = bucket_firsts(index)
    table = BotHourlyRollup._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(  # summed per bucket in SQL: ~30 rows for 30 days, not 720
            f"""
            SELECT width_bucket(hour, %(thresholds)s::timestamptz[]) - 1,
                {", ".join(f"sum({name})" for name in names)}
            FROM {table}
            WHERE organization_id = %(org)s AND bot_id = ANY(%(bots)s)
              AND hour >= %(first)s AND hour <= %(last)s
            GROUP BY 1
            """,  # noqa: S608 - the table and column names are ours
            {
                "thresholds": thresholds,
                "org": org.pk,
                "bots": ids,
                "first": thresholds[0],
                "last": max(index),
            },
        )
        for i, *values in cursor.fetchall():
            seen[i] = True
            acc[i] = dict(zip(names, values, strict=True))
    points = []
    for b, a, has_rows in zip(buckets, acc, seen, strict=True):
        replies = a["successes"] + a["failures"] + a["fallbacks"]
        counts = {
            name: a[name] if has_rows else None
            for name in (
                "tokens",
                "handoffs",
                "conversations_ended",
                "calls",
                "bookings",
                "emails",
                "tasks",
            )
        }
        points.append(
            RollupPoint(
                start=b.start,
                end=b.end,
                replies=replies,
                success_rate=ratio(a["successes"], replies),
                kb_hit_rate=ratio(a["kb_hits"], a["kb_hits"] + a["kb_misses"]),
                cost_usd=float(a["cost_usd"]) if has_rows else None,
                revenue=float(a["revenue"]) if has_rows else None,
                avg_duration_seconds=ratio(
                    a["duration_sum_seconds"], a["conversations_ended"], 1.0
                ),
                **counts,
            )
        )
    return points
