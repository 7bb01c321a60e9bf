"""What workers derive from the events: per-conversation metrics, hourly and daily rollups,
their bookkeeping (dirty marks, backfill runs) and the insight reports."""

from __future__ import annotations

from django.db import models
from django.utils.timezone import now

from analytics.models.catalog import Bot
from analytics.models.events import Conversation
from analytics.models.tenancy import Organization, TenantModel, unenforced_fk


class ConversationMetrics(TenantModel):
    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, related_name="metrics"
    )
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    total_messages = models.PositiveIntegerField(default=0)
    user_messages = models.PositiveIntegerField(default=0)
    bot_messages = models.PositiveIntegerField(default=0)
    avg_response_time_ms = models.FloatField(null=True, blank=True)
    p50_response_time_ms = models.FloatField(null=True, blank=True)
    p95_response_time_ms = models.FloatField(null=True, blank=True)
    p99_response_time_ms = models.FloatField(null=True, blank=True)
    successful_responses = models.PositiveIntegerField(default=0)
    failed_responses = models.PositiveIntegerField(default=0)
    fallback_responses = models.PositiveIntegerField(default=0)
    handoff = models.BooleanField(default=False)
    kb_hits = models.PositiveIntegerField(default=0)
    kb_misses = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    resolution_status = models.CharField(
        max_length=10, choices=Conversation.Status.choices, blank=True
    )
    csat = models.PositiveSmallIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    same_org_fields = ("bot", "conversation")

    class Meta:
        verbose_name_plural = "conversation metrics"
        indexes = [
            models.Index(fields=["organization", "bot", "-started_at"], name="cm_org_bot_started"),
        ]

    def __str__(self) -> str:
        return f"metrics of conversation {self.conversation_id}"


class BotHourlyRollup(TenantModel):
    """Per bot-hour counters plus a mergeable response-time histogram (see analytics.sketch)."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    messages_in = models.PositiveIntegerField(default=0)
    messages_out = models.PositiveIntegerField(default=0)
    conversations_started = models.PositiveIntegerField(default=0)
    conversations_ended = models.PositiveIntegerField(default=0)
    # Seconds from start to end of the conversations that ended in the hour (average duration =
    # this / conversations_ended, over any range, without reading the conversations).
    duration_sum_seconds = models.FloatField(default=0)
    successes = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    fallbacks = models.PositiveIntegerField(default=0)
    handoffs = models.PositiveIntegerField(default=0)
    kb_hits = models.PositiveIntegerField(default=0)
    kb_misses = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    response_count = models.PositiveIntegerField(default=0)
    response_sum_ms = models.PositiveBigIntegerField(default=0)
    response_hist = models.JSONField(default=dict, blank=True)
    csat_sum = models.PositiveIntegerField(default=0)
    csat_count = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0)
    bookings = models.PositiveIntegerField(default=0)
    emails = models.PositiveIntegerField(default=0)
    tasks = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    same_org_fields = ("bot",)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "bot", "hour"], name="hourly_unique_bot_hour"
            )
        ]

    def __str__(self) -> str:
        return f"{self.bot_id} @ {self.hour:%Y-%m-%d %H}:00"


class BotDailyMetrics(TenantModel):
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    date = models.DateField()
    total_conversations = models.PositiveIntegerField(default=0)
    total_messages = models.PositiveIntegerField(default=0)
    messages_in = models.PositiveIntegerField(default=0)
    messages_out = models.PositiveIntegerField(default=0)
    avg_response_time_ms = models.FloatField(null=True, blank=True)
    p50_response_time_ms = models.FloatField(null=True, blank=True)
    p95_response_time_ms = models.FloatField(null=True, blank=True)
    p99_response_time_ms = models.FloatField(null=True, blank=True)
    # The day's response-time histogram (sketch buckets, as BotHourlyRollup.response_hist): a
    # 30-day range merges 30 of these instead of 720 hourly ones. NULL: built before it existed.
    response_hist = models.JSONField(null=True, blank=True)
    success_rate = models.FloatField(null=True, blank=True)
    error_rate = models.FloatField(null=True, blank=True)
    fallback_rate = models.FloatField(null=True, blank=True)
    handoff_rate = models.FloatField(null=True, blank=True)
    kb_hit_rate = models.FloatField(null=True, blank=True)
    total_tokens = models.PositiveBigIntegerField(default=0)
    avg_tokens_per_conversation = models.FloatField(null=True, blank=True)
    total_cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    cost_per_conversation_usd = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True
    )
    avg_duration_seconds = models.FloatField(null=True, blank=True)
    avg_messages_per_conversation = models.FloatField(null=True, blank=True)
    csat_avg = models.FloatField(null=True, blank=True)
    call_attempts = models.PositiveIntegerField(default=0)
    calls_answered = models.PositiveIntegerField(default=0)
    calls_busy = models.PositiveIntegerField(default=0)
    calls_no_answer = models.PositiveIntegerField(default=0)
    calls_failed = models.PositiveIntegerField(default=0)
    calls_converted = models.PositiveIntegerField(default=0)
    calls_opt_out = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    same_org_fields = ("bot",)

    class Meta:
        verbose_name_plural = "bot daily metrics"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "bot", "date"], name="daily_unique_bot_date"
            )
        ]

    def __str__(self) -> str:
        return f"{self.bot_id} on {self.date}"


def _measures(model: type[models.Model], key: str) -> tuple[str, ...]:
    """A rollup's measured columns in field order: every concrete field but its keys."""
    keys = {"id", "organization", "bot", "updated_at", key}
    return tuple(f.column for f in model._meta.concrete_fields if f.name not in keys)


#: What a bot-hour measures (services.rollup.hourly builds and upserts exactly these).
HOURLY_MEASURES = _measures(BotHourlyRollup, "hour")
#: The same without the histogram: the counters a range of hours sums.
HOURLY_COUNTERS = tuple(c for c in HOURLY_MEASURES if c != "response_hist")
#: What a bot-day measures (services.rollup.daily builds and upserts exactly these).
DAILY_MEASURES = _measures(BotDailyMetrics, "date")
#: The same without the histogram: the daily-metrics CSV's figures.
DAILY_FIGURES = tuple(c for c in DAILY_MEASURES if c != "response_hist")


class OrgHourlyUsage(TenantModel):
    hour = models.DateTimeField()
    messages_sent = models.PositiveIntegerField(default=0)
    messages_received = models.PositiveIntegerField(default=0)
    conversations_started = models.PositiveIntegerField(default=0)
    conversations_ended = models.PositiveIntegerField(default=0)
    active_users = models.PositiveIntegerField(default=0)
    bots_active = models.PositiveIntegerField(default=0)
    most_active_bot = models.ForeignKey(
        Bot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_calls = models.PositiveIntegerField(default=0)
    ingest_requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    same_org_fields = ("most_active_bot",)

    class Meta:
        verbose_name_plural = "org hourly usage"
        constraints = [
            models.UniqueConstraint(fields=["organization", "hour"], name="usage_unique_org_hour")
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} @ {self.hour:%Y-%m-%d %H}:00"


# --- rollup bookkeeping ----------------------------------------------------------------------


class RollupDirtyHour(TenantModel):
    """An org-hour with events not yet in its rollups: the work list of the hourly run.

    Ingestion marks the hours of every batch (one INSERT .. ON CONFLICT DO NOTHING); the hourly
    run rebuilds each complete marked hour and deletes the mark in the same transaction, so a
    missed run, late data and a killed worker all leave the mark for the next run.
    """

    # Written by ingestion for every batch, like Message: not enforced by PostgreSQL.
    organization = unenforced_fk(Organization)
    hour = models.DateTimeField()
    marked_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "hour"], name="dirty_unique_org_hour")
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} @ {self.hour:%Y-%m-%d %H}:00"


class RollupDirtyDay(TenantModel):
    """An org-local day whose daily bot metrics must be (re)built once the day is due (01:00)."""

    date = models.DateField()
    marked_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "date"], name="dirty_unique_org_date")
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} on {self.date}"


class RollupBackfill(TenantModel):
    """One `manage.py backfill` run; its finished units let an interrupted run resume."""

    since = models.DateField()
    until = models.DateField()
    via_celery = models.BooleanField(default=False)
    units_total = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "since", "until"], name="backfill_org_range"),
        ]

    def __str__(self) -> str:
        return f"backfill of {self.organization_id} {self.since}..{self.until}"


class RollupBackfillUnit(TenantModel):
    """A unit (`h:<hour>`, `d:<date>` or `c:<date>`) a backfill run has finished."""

    backfill = models.ForeignKey(RollupBackfill, on_delete=models.CASCADE, related_name="units")
    unit = models.CharField(max_length=40)
    done_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "backfill", "unit"], name="backfill_unique_unit"
            )
        ]

    def __str__(self) -> str:
        return self.unit


# --- insights --------------------------------------------------------------------------------


class InsightReport(TenantModel):
    """Forecasts, anomalies and customers at risk of one scope, computed by a worker and read by
    the insights page (scope "org" for the whole org, "bot:<id>" for one bot)."""

    scope = models.CharField(max_length=40)
    computed_at = models.DateTimeField(default=now)
    seconds = models.FloatField(default=0)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "scope"], name="insight_unique_scope")
        ]

    def __str__(self) -> str:
        return f"insights of {self.organization_id} {self.scope}"
