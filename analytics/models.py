"""The domain model. Every tenant-owned row carries a non-null organization; indexes lead with it."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now

from analytics.alert_checks import alert_rule_check


def _validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (e.g. Europe/Berlin).")


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[_validate_timezone])
    created_at = models.DateTimeField(default=now)
    # Set when events were stored while Redis was unreachable: the live state is rebuilt from
    # PostgreSQL for the recent window once Redis answers again.
    live_stale_since = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class OrgQuerySet(models.QuerySet):
    """The one way to read tenant rows: `Model.objects.for_org(org)`."""

    def for_org(self, org: Organization | int) -> OrgQuerySet:
        org_id = org if isinstance(org, int) else org.pk
        if org_id is None:
            raise ValueError("for_org() needs a saved organization")
        return self.filter(organization_id=org_id)


class TenantModel(models.Model):
    """Base of every tenant-owned row; related tenant rows must belong to the same org."""

    # No index of its own: every tenant table has a composite index that leads with it.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )

    objects = OrgQuerySet.as_manager()

    # Foreign keys (to tenant models) that must point into this row's organization.
    same_org_fields: tuple[str, ...] = ()

    class Meta:
        abstract = True

    def validate_constraints(self, exclude=None):
        # A clash on (organization, x) is reported on field x, where the user can fix it.
        try:
            super().validate_constraints(exclude=exclude)
        except ValidationError as exc:
            errors = exc.update_error_dict({})
            kept = []
            for error in errors.pop(NON_FIELD_ERRORS, []):
                check = (
                    (error.params or {}).get("unique_check", ())
                    if error.code in ("unique", "unique_together")
                    else ()
                )
                others = [name for name in check if name != "organization"]
                if "organization" in check and len(others) == 1:
                    field = self._meta.get_field(others[0])
                    message = (
                        f"{str(self._meta.verbose_name).capitalize()} with this "
                        f"{field.verbose_name} already exists in this organization."
                    )
                    errors.setdefault(field.name, []).append(
                        ValidationError(message, code="unique")
                    )
                else:
                    kept.append(error)
            if kept:
                errors[NON_FIELD_ERRORS] = kept
            raise ValidationError(errors) from None

    def clean(self) -> None:
        super().clean()
        errors = {}
        for field in self.same_org_fields:
            related = getattr(self, field, None)
            if (
                related is not None
                and self.organization_id is not None
                and related.organization_id != self.organization_id
            ):
                errors[field] = f"This {field} belongs to another organization."
        if errors:
            raise ValidationError(errors)


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    ANALYST = "analyst", "Analyst"
    VIEWER = "viewer", "Viewer"


ADMIN_ROLES = (Role.OWNER, Role.ADMIN)


class Membership(TenantModel):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


class ApiKey(TenantModel):
    class Scope(models.TextChoices):
        INGEST = "ingest", "Ingest events"
        READ = "read", "Read analytics"
        ALERTS = "alerts", "Manage alert rules"

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=10, choices=Scope.choices), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=now)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="apikey_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return self.is_active and scope in self.scopes


class Channel(models.TextChoices):
    WHATSAPP = "whatsapp", "WhatsApp"
    WEB = "web", "Web chat"
    SMS = "sms", "SMS"
    EMAIL = "email", "Email"
    VOICE = "voice", "Voice"


class Bot(TenantModel):
    class Kind(models.TextChoices):
        CHATBOT = "chatbot", "Chat bot"
        AI_EMPLOYEE = "ai_employee", "AI employee"
        VOICE = "voice", "Voice bot"

    slug = models.SlugField(max_length=60)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.CHATBOT)
    persona = models.CharField(max_length=100, blank=True, help_text="Role, e.g. Sales Specialist")
    avatar = models.CharField(max_length=200, blank=True, help_text="An emoji or an image URL")
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.WEB)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="bot_unique_slug")
        ]

    def __str__(self) -> str:
        return self.name


class Campaign(TenantModel):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"

    slug = models.SlugField(max_length=60)
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    bot = models.ForeignKey(Bot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)

    same_org_fields = ("bot",)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="campaign_unique_slug")
        ]

    def __str__(self) -> str:
        return self.name


class CallOutcome(models.TextChoices):
    ANSWERED = "answered", "Answered"
    BUSY = "busy", "Busy"
    NO_ANSWER = "no_answer", "No answer"
    FAILED = "failed", "Failed"
    CONVERTED = "converted", "Converted"
    OPT_OUT = "opt_out", "Opted out"


class Conversation(TenantModel):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        RESOLVED = "resolved", "Resolved"
        UNRESOLVED = "unresolved", "Unresolved"
        ESCALATED = "escalated", "Escalated"

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    external_id = models.CharField(max_length=200)
    customer = models.CharField(max_length=200, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.WEB)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField(default=now)
    last_activity_at = models.DateTimeField(default=now)
    ended_at = models.DateTimeField(null=True, blank=True)
    handoff = models.BooleanField(default=False)
    csat = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    call_outcome = models.CharField(max_length=10, choices=CallOutcome.choices, blank=True)

    same_org_fields = ("bot", "campaign")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "bot", "external_id"],
                name="conversation_unique_external_id",
            ),
            models.CheckConstraint(
                condition=models.Q(csat__isnull=True) | models.Q(csat__gte=1, csat__lte=5),
                name="conversation_csat_range",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-started_at"], name="conv_org_started"),
            # Rollups count the conversations that ended in an hour or day.
            models.Index(fields=["organization", "ended_at"], name="conv_org_ended"),
            models.Index(
                fields=["organization", "bot", "-started_at"], name="conv_org_bot_started"
            ),
            models.Index(
                fields=["organization", "campaign", "-started_at"], name="conv_org_camp_started"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer or self.external_id} · {self.bot_id}"


class Direction(models.TextChoices):
    INBOUND = "inbound", "Inbound"
    OUTBOUND = "outbound", "Outbound"


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"
    FALLBACK = "fallback", "Fallback"


def _unenforced_fk(model, related_name: str = "+") -> models.ForeignKey:
    """A foreign key Django follows and cascades, but PostgreSQL neither checks nor indexes."""
    return models.ForeignKey(
        model,
        on_delete=models.CASCADE,
        related_name=related_name,
        db_index=False,
        db_constraint=False,
    )


class Message(TenantModel):
    """Append-only and the largest table; nothing holds a foreign key to it (partition-ready).

    Its foreign keys are not enforced by PostgreSQL: the deferred per-row constraint triggers
    cost more at commit than the rest of an ingest batch. Ingestion resolves the org, bot and
    conversation in the same transaction, and Django still cascades deletes.
    """

    organization = _unenforced_fk(Organization)
    # Covered by the composite indexes below; single-column ones would only slow ingestion.
    bot = _unenforced_fk(Bot)
    conversation = _unenforced_fk(Conversation, related_name="messages")
    direction = models.CharField(max_length=8, choices=Direction.choices)
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=now)
    response_time_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, blank=True)
    tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    kb_hit = models.BooleanField(null=True, blank=True)

    same_org_fields = ("bot", "conversation")

    class Meta:
        indexes = [
            # Time-ordered appends: a BRIN index serves org-wide time ranges at a fraction of a
            # btree's write cost (the composite btrees serve per-bot and per-conversation reads).
            BrinIndex(fields=["created_at"], name="msg_created_brin", autosummarize=True),
            models.Index(fields=["organization", "bot", "created_at"], name="msg_org_bot_created"),
            models.Index(
                fields=["organization", "conversation", "created_at"], name="msg_org_conv_created"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.created_at:%Y-%m-%d %H:%M}"


class Activity(TenantModel):
    """Work done by an AI employee: a call, booking, email or task, optionally worth money."""

    class Kind(models.TextChoices):
        CALL = "call", "Call"
        BOOKING = "booking", "Booking"
        EMAIL = "email", "Email"
        TASK = "task", "Task"

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    description = models.CharField(max_length=500, blank=True)
    customer = models.CharField(max_length=200, blank=True)
    value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(default=now)

    same_org_fields = ("bot",)

    class Meta:
        verbose_name_plural = "activities"
        indexes = [
            models.Index(fields=["organization", "created_at"], name="act_org_created"),
            models.Index(fields=["organization", "bot", "created_at"], name="act_org_bot_created"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.description[:40]}"


class Gauge(TenantModel):
    """A sampled value, e.g. a campaign's queue depth."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(max_length=64)
    value = models.FloatField()
    created_at = models.DateTimeField(default=now)

    same_org_fields = ("bot", "campaign")

    class Meta:
        indexes = [
            models.Index(
                fields=["organization", "name", "created_at"], name="gauge_org_name_created"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class EventReceipt(TenantModel):
    """One row per accepted event id: the idempotency key of ingestion, for all event types."""

    # Not enforced by PostgreSQL, like Message's keys: ingestion writes it for every event.
    organization = _unenforced_fk(Organization)

    event_id = models.UUIDField()
    type = models.CharField(max_length=32)
    received_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "event_id"], name="receipt_unique_event"
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


# --- rollups -------------------------------------------------------------------------------


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
    organization = _unenforced_fk(Organization)
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


# --- insights and alerts ---------------------------------------------------------------------


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


class AlertMetric(models.TextChoices):
    P95_RESPONSE = "p95_response_ms", "p95 response time (ms)"
    AVG_RESPONSE = "avg_response_ms", "Average response time (ms)"
    ERROR_RATE = "error_rate", "Error rate (%)"
    FALLBACK_RATE = "fallback_rate", "Fallback rate (%)"
    HANDOFF_RATE = "handoff_rate", "Handoff rate (%)"
    SUCCESS_RATE = "success_rate", "Success rate (%)"
    VOLUME = "volume", "Messages in the window"
    CONVERSATIONS = "conversations", "Conversations started in the window"
    QUEUE_DEPTH = "queue_depth", "Queue depth (latest gauge)"
    COST_PER_DAY = "cost_per_day", "Cost over the last 24 hours (USD)"
    CSAT = "csat", "CSAT (average, 1–5)"
    NO_DATA = "no_data", "No data for N minutes"


class AlertRule(TenantModel):
    """A threshold on one metric of the org, a bot or a campaign, checked every minute."""

    class Comparison(models.TextChoices):
        ABOVE = "above", "is above"
        BELOW = "below", "is below"

    class State(models.TextChoices):
        OK = "ok", "OK"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    name = models.CharField(max_length=120)
    metric = models.CharField(max_length=20, choices=AlertMetric.choices)
    bot = models.ForeignKey(
        Bot, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Only this bot (leave empty for the whole organization).",
    )  # fmt: skip
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Only this campaign (queue depth: its gauge; other metrics: its bot).",
    )  # fmt: skip
    comparison = models.CharField(
        max_length=5, choices=Comparison.choices, default=Comparison.ABOVE
    )
    warning_threshold = models.FloatField(null=True, blank=True)
    critical_threshold = models.FloatField(null=True, blank=True)
    window_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(1440)]
    )
    cooldown_minutes = models.PositiveIntegerField(
        default=30,
        validators=[MaxValueValidator(7 * 1440)],
        help_text="No new notification for this rule within this many minutes of the last one.",
    )
    hysteresis_percent = models.FloatField(
        default=10,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="A firing alert recovers only once the value is this far back past the threshold.",
    )
    email_recipients = models.TextField(
        blank=True, help_text="Addresses to notify, separated by commas or new lines."
    )
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(
        max_length=128, blank=True, help_text="Signs each webhook body (HMAC-SHA256)."
    )
    enabled = models.BooleanField(default=True)
    muted_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=now)
    # evaluation state, written by the evaluator only
    state = models.CharField(max_length=8, choices=State.choices, default=State.OK, editable=False)
    last_value = models.FloatField(null=True, blank=True, editable=False)
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_notified_at = models.DateTimeField(null=True, blank=True, editable=False)

    same_org_fields = ("bot", "campaign")

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["organization", "enabled"], name="alertrule_org_enabled")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        alert_rule_check(self)  # no I/O: the alerts service checks where a webhook resolves

    def is_muted(self, at=None) -> bool:
        return self.muted_until is not None and self.muted_until > (at or now())


class AlertEvent(TenantModel):
    """One firing of a rule, from the evaluation that crossed a threshold to its recovery."""

    class Status(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    rule_name = models.CharField(max_length=120)
    metric = models.CharField(max_length=20, choices=AlertMetric.choices)
    scope_label = models.CharField(max_length=200, blank=True)
    severity = models.CharField(max_length=8, choices=AlertRule.State.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.FIRING)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(default=now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=200, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    notified = models.BooleanField(default=False)

    same_org_fields = ("rule",)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["organization", "-started_at"], name="alertevent_org_started"),
            models.Index(fields=["organization", "status"], name="alertevent_org_status"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_name}: {self.severity} at {self.started_at:%Y-%m-%d %H:%M}"


class AlertNotification(TenantModel):
    """One message about an alert event to one channel (email or webhook), with its delivery."""

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class Kind(models.TextChoices):
        FIRING = "firing", "Firing"
        ESCALATED = "escalated", "Escalated"
        RESOLVED = "resolved", "Resolved"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="notifications")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    target = models.CharField(max_length=500)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=now)
    sent_at = models.DateTimeField(null=True, blank=True)

    same_org_fields = ("event",)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="alertnotif_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.kind} ({self.status})"


# --- team and audit log (issue 11) ------------------------------------------------------------


class Invitation(TenantModel):
    """An email invitation to join an org with a role; only a hash of its one-time token is kept."""

    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "email"], name="invitation_org_email")]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization} ({self.role})"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > now()


class AuditEvent(TenantModel):
    """Who did what to the org, when and from where. Labels are copied so the entry outlives
    the user, key or rule it names; details never hold customer data."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="auditevent_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target}"
