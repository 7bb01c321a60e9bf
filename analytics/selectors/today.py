"""Today's figures of every bot (org time zone): rolled-up hours, then live minutes for the rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import redis
from django.db.models import Count, Q, Sum
from django.utils import timezone

from analytics.live_keys import bot_key, epoch_minute
from analytics.models import (
    Activity,
    Bot,
    BotHourlyRollup,
    Conversation,
    Direction,
    Message,
    Organization,
    Outcome,
)
from analytics.selectors.live import live_sums
from analytics.selectors.rollups import Totals, stale_hours
from analytics.timeutil import HOUR, floor_hour, org_day_start


@dataclass(frozen=True)
class BotToday:
    bot: Bot
    conversations: int
    messages_in: int
    messages_out: int
    avg_response_ms: float | None
    success_rate: float | None  # percent of outbound messages with outcome "success"
    activities: int
    revenue: float


def bot_today_list(*, org: Organization, now: datetime | None = None) -> list[BotToday]:
    """Every bot of the org with today's counts (org time zone).

    Completed hours come from the hourly rollups; the rest of the day (the current hour, an hour
    not rolled up yet) from the live minute counters for messages and from those few hours' rows
    for conversations and activities, so the cost does not grow with the day's traffic.
    """
    now = now or timezone.now()
    since = org_day_start(org, now)
    bots = list(Bot.objects.for_org(org).order_by("kind", "name"))
    ids = [b.pk for b in bots]
    totals = {pk: Totals() for pk in ids}
    conversations = dict.fromkeys(ids, 0)
    activities = dict.fromkeys(ids, 0)
    revenue = dict.fromkeys(ids, Decimal(0))
    rows = list(
        BotHourlyRollup.objects.for_org(org)
        .filter(bot_id__in=ids, hour__gte=since, hour__lt=floor_hour(now))
        .values_list(
            "hour",
            "bot_id",
            "messages_in",
            "messages_out",
            "successes",
            "failures",
            "fallbacks",
            "response_count",
            "response_sum_ms",
            "conversations_started",
            "calls",
            "bookings",
            "emails",
            "tasks",
            "revenue",
        )
    )
    stale = stale_hours(org, since, now) if rows else set()
    rolled: set[datetime] = set()
    for row in rows:
        hour, bot_id, *counts, started, calls, bookings, emails, tasks, value = row
        if hour in stale:
            continue
        rolled.add(hour)
        totals[bot_id].add(*counts)
        conversations[bot_id] += started
        activities[bot_id] += calls + bookings + emails + tasks
        revenue[bot_id] += value
    tail = _unrolled_ranges(since, now, rolled)
    if tail:
        in_tail, started_in_tail = Q(), Q()
        for a, b in tail:
            in_tail |= Q(created_at__gte=a, created_at__lt=b)
            started_in_tail |= Q(started_at__gte=a, started_at__lt=b)
        _today_messages_tail(org, ids, tail, in_tail, totals)
        for bot_id, n in (
            Conversation.objects.for_org(org)
            .filter(started_in_tail, bot_id__in=ids)
            .values_list("bot_id")
            .annotate(n=Count("id"))
        ):
            conversations[bot_id] += n
        for bot_id, n, value in (
            Activity.objects.for_org(org)
            .filter(in_tail, bot_id__in=ids)
            .values_list("bot_id")
            .annotate(n=Count("id"), revenue=Sum("value"))
        ):
            activities[bot_id] += n
            revenue[bot_id] += value or 0
    result = []
    for bot in bots:
        t = totals[bot.pk]
        replies = t.ok + t.fail + t.fb
        result.append(
            BotToday(
                bot=bot,
                conversations=conversations[bot.pk],
                messages_in=t.inbound,
                messages_out=t.outbound,
                avg_response_ms=t.rt_sum / t.rt_n if t.rt_n else None,
                success_rate=100.0 * t.ok / replies if replies else None,
                activities=activities[bot.pk],
                revenue=float(revenue[bot.pk]),
            )
        )
    return result


def _unrolled_ranges(
    since: datetime, now: datetime, rolled: set[datetime]
) -> list[tuple[datetime, datetime]]:
    """The [start, end) ranges from `since` to now that lie outside the rolled-up hours."""
    ranges: list[tuple[datetime, datetime]] = []
    hour, end = floor_hour(since), now + timedelta(minutes=1)
    while hour < end:
        if hour not in rolled:
            a, b = max(hour, since), min(hour + HOUR, end)
            if ranges and ranges[-1][1] == a:
                ranges[-1] = (ranges[-1][0], b)
            else:
                ranges.append((a, b))
        hour += HOUR
    return ranges


def _today_messages_tail(org, ids, tail, in_tail, totals) -> None:
    """Add the live minute counters of each bot over `tail`; the message rows if Redis is down."""
    minutes = [
        m
        for a, b in tail
        for m in range(epoch_minute(a), epoch_minute(b - timedelta(microseconds=1)) + 1)
    ]
    if org.live_stale_since is None:
        try:
            groups = [[(bot_key(org.pk, b, "m", m), None) for m in minutes] for b in ids]
            for bot_id, (counts, _hist) in zip(ids, live_sums(groups), strict=True):
                totals[bot_id].add(*counts)
            return
        except redis.RedisError:
            pass  # the same figures from the (few) message rows of those minutes
    for row in (
        Message.objects.for_org(org)
        .filter(in_tail, bot_id__in=ids)
        .values("bot_id")
        .annotate(
            inbound=Count("id", filter=Q(direction=Direction.INBOUND)),
            outbound=Count("id", filter=Q(direction=Direction.OUTBOUND)),
            ok=Count(
                "id", filter=Q(direction=Direction.OUTBOUND, outcome__in=("", Outcome.SUCCESS))
            ),
            fail=Count("id", filter=Q(direction=Direction.OUTBOUND, outcome=Outcome.FAILED)),
            fb=Count("id", filter=Q(direction=Direction.OUTBOUND, outcome=Outcome.FALLBACK)),
            rt_n=Count("response_time_ms"),
            rt_sum=Sum("response_time_ms", default=0),
        )
    ):
        totals[row.pop("bot_id")].add(**row)
