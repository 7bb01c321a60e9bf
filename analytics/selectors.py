"""Reads. Every function takes the organization explicitly and returns plain data or querysets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from analytics.models import Activity, Bot, Conversation, Direction, Message, Organization, Outcome


def org_day_start(org: Organization, now: datetime | None = None) -> datetime:
    """Midnight today in the org's time zone, as an aware datetime."""
    local = (now or timezone.now()).astimezone(org.tz)
    return datetime.combine(local.date(), time.min, tzinfo=org.tz)


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
    """Every bot of the org with today's counts (org time zone), read from the raw tables."""
    since = org_day_start(org, now)
    bots = list(Bot.objects.for_org(org).order_by("kind", "name"))
    conversations = dict(
        Conversation.objects.for_org(org)
        .filter(started_at__gte=since)
        .values_list("bot_id")
        .annotate(n=Count("id"))
    )
    messages = {
        row["bot_id"]: row
        for row in Message.objects.for_org(org)
        .filter(created_at__gte=since)
        .values("bot_id")
        .annotate(
            inbound=Count("id", filter=Q(direction=Direction.INBOUND)),
            outbound=Count("id", filter=Q(direction=Direction.OUTBOUND)),
            succeeded=Count("id", filter=Q(outcome=Outcome.SUCCESS)),
            rated=Count("id", filter=~Q(outcome="")),
            avg_response=Avg("response_time_ms"),
        )
    }
    activities = {
        row["bot_id"]: row
        for row in Activity.objects.for_org(org)
        .filter(created_at__gte=since)
        .values("bot_id")
        .annotate(n=Count("id"), revenue=Sum("value"))
    }
    result = []
    for bot in bots:
        m = messages.get(bot.pk, {})
        a = activities.get(bot.pk, {})
        rated = m.get("rated", 0)
        result.append(
            BotToday(
                bot=bot,
                conversations=conversations.get(bot.pk, 0),
                messages_in=m.get("inbound", 0),
                messages_out=m.get("outbound", 0),
                avg_response_ms=m.get("avg_response"),
                success_rate=(100.0 * m["succeeded"] / rated) if rated else None,
                activities=a.get("n", 0),
                revenue=float(a.get("revenue") or 0),
            )
        )
    return result
