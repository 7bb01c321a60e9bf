"""Campaign reads: today's live status, period summaries and outcome series.

Campaign figures come from the campaign's conversations (the range's rows only, through the
(organization, campaign, started_at) index).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Avg, Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from analytics.live_keys import ACTIVE_WINDOW
from analytics.models import Campaign, Conversation, Organization
from analytics.selectors.live import live_gauges
from analytics.selectors.periods import Period, period_buckets
from analytics.selectors.summaries import ratio
from analytics.timeutil import org_day_start

CALL_OUTCOME_ORDER = ("answered", "converted", "busy", "no_answer", "failed", "opt_out")


@dataclass(frozen=True)
class CampaignStatus:
    campaign: Campaign
    attempts: int  # calls started today (org time zone)
    outcomes: dict[str, int]
    active_calls: int
    dialing_per_min: float  # calls started over the last 10 minutes, per minute
    queue_depth: float | None  # latest `queue_depth` gauge of the campaign

    @property
    def answer_rate(self) -> float | None:
        done = sum(self.outcomes.values())
        answered = self.outcomes.get("answered", 0) + self.outcomes.get("converted", 0)
        return 100.0 * answered / done if done else None

    @property
    def conversion_rate(self) -> float | None:
        done = sum(self.outcomes.values())
        return 100.0 * self.outcomes.get("converted", 0) / done if done else None


def campaign_status_list(*, org: Organization, now: datetime | None = None) -> list[CampaignStatus]:
    """Today's calls, outcomes and live queue of every campaign of the org (active ones first)."""
    now = now or timezone.now()
    campaigns = list(Campaign.objects.for_org(org).order_by("status", "name"))
    if not campaigns:
        return []
    # campaign = each id (not "is not null"): the (organization, campaign, started_at) index then
    # reads only today's rows of each campaign, not every call the campaigns ever made.
    conversations = Conversation.objects.for_org(org).filter(
        campaign_id__in=[c.pk for c in campaigns]
    )
    today = conversations.filter(started_at__gte=org_day_start(org, now))
    attempts = dict(today.values_list("campaign_id").annotate(n=Count("id")))
    outcomes: dict[int, dict[str, int]] = {}
    for campaign_id, outcome, n in (
        today.exclude(call_outcome="")
        .values_list("campaign_id", "call_outcome")
        .annotate(n=Count("id"))
    ):
        outcomes.setdefault(campaign_id, {})[outcome] = n
    active = dict(
        conversations.filter(ended_at__isnull=True, last_activity_at__gte=now - ACTIVE_WINDOW)
        .values_list("campaign_id")
        .annotate(n=Count("id"))
    )
    recent = dict(
        conversations.filter(started_at__gte=now - timedelta(minutes=10))
        .values_list("campaign_id")
        .annotate(n=Count("id"))
    )
    gauges = live_gauges(org=org)
    return [
        CampaignStatus(
            campaign=c,
            attempts=attempts.get(c.pk, 0),
            outcomes={o: outcomes.get(c.pk, {}).get(o, 0) for o in CALL_OUTCOME_ORDER},
            active_calls=active.get(c.pk, 0),
            dialing_per_min=recent.get(c.pk, 0) / 10,
            queue_depth=(gauges.get(f"{c.slug}:queue_depth") or {}).get("value"),
        )
        for c in campaigns
    ]


@dataclass(frozen=True)
class CampaignSummary:
    start: datetime
    end: datetime
    attempts: int  # conversations (calls) started in the range
    outcomes: dict[str, int]  # every CALL_OUTCOME_ORDER key
    handoffs: int
    csat_avg: float | None
    avg_duration_seconds: float | None

    @property
    def completed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def answer_rate(self) -> float | None:
        answered = self.outcomes["answered"] + self.outcomes["converted"]
        return ratio(answered, self.completed)

    @property
    def conversion_rate(self) -> float | None:
        return ratio(self.outcomes["converted"], self.completed)


def campaign_period_summary(
    *, org: Organization, campaign: Campaign, start: datetime, end: datetime
) -> CampaignSummary:
    """A campaign's calls over [start, end): attempts, each outcome, handoffs, CSAT, duration."""
    if campaign.organization_id != org.pk:
        raise ValueError("campaign is not in this organization")
    rows = Conversation.objects.for_org(org).filter(
        campaign_id=campaign.pk, started_at__gte=start, started_at__lt=end
    )
    totals = rows.aggregate(
        attempts=Count("id"),
        handoffs=Count("id", filter=Q(handoff=True)),
        csat=Avg("csat"),
        duration=Avg("metrics__duration_seconds"),
        **{o: Count("id", filter=Q(call_outcome=o)) for o in CALL_OUTCOME_ORDER},
    )
    return CampaignSummary(
        start=start,
        end=end,
        attempts=totals["attempts"],
        outcomes={o: totals[o] for o in CALL_OUTCOME_ORDER},
        handoffs=totals["handoffs"],
        csat_avg=totals["csat"],
        avg_duration_seconds=float(totals["duration"]) if totals["duration"] is not None else None,
    )


@dataclass(frozen=True)
class CampaignPoint:
    start: datetime
    end: datetime
    attempts: int
    outcomes: dict[str, int]


def campaign_outcome_series(
    *, org: Organization, campaign: Campaign, period: Period | str, now: datetime | None = None
) -> list[CampaignPoint]:
    """Call attempts and outcomes per bucket of the period."""
    if campaign.organization_id != org.pk:
        raise ValueError("campaign is not in this organization")
    now = now or timezone.now()
    buckets, index = period_buckets(org=org, period=period, now=now)
    attempts = [0] * len(buckets)
    outcomes = [dict.fromkeys(CALL_OUTCOME_ORDER, 0) for _ in buckets]
    hours = sorted(index)
    for hour, outcome, n in (
        Conversation.objects.for_org(org)
        .filter(campaign_id=campaign.pk, started_at__gte=hours[0], started_at__lt=now)
        .annotate(h=TruncHour("started_at", tzinfo=UTC))
        .values_list("h", "call_outcome")
        .annotate(n=Count("id"))
    ):
        i = index.get(hour)
        if i is None:
            continue
        attempts[i] += n
        if outcome in outcomes[i]:
            outcomes[i][outcome] += n
    return [
        CampaignPoint(b.start, b.end, a, o)
        for b, a, o in zip(buckets, attempts, outcomes, strict=True)
    ]
