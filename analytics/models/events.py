"""What the bot platforms send: conversations, messages, activities, gauges, and the receipt
that makes each accepted event idempotent."""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now

from analytics import partitioning
from analytics.models.catalog import Bot, Campaign, Channel
from analytics.models.tenancy import Organization, TenantModel, unenforced_fk


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
            # Erasure and access requests find a customer's conversations by their identifier.
            models.Index(fields=["organization", "customer"], name="conv_org_customer"),
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


class Message(TenantModel):
    """Append-only and the largest table; nothing holds a foreign key to it. Partitioned by
    month on created_at (analytics/partitioning.py; primary key (id, created_at) in PostgreSQL).

    Its foreign keys are not enforced by PostgreSQL: the deferred per-row constraint triggers
    cost more at commit than the rest of an ingest batch. Ingestion resolves the org, bot and
    conversation in the same transaction, and Django still cascades deletes.
    """

    organization = unenforced_fk(Organization)
    # Covered by the composite indexes below; single-column ones would only slow ingestion.
    bot = unenforced_fk(Bot)
    conversation = unenforced_fk(Conversation, related_name="messages")
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
    """Work done by an AI employee: a call, booking, email or task, optionally worth money.
    Partitioned by month on created_at, like Message."""

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
            models.Index(fields=["organization", "customer"], name="act_org_customer"),
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
    """One row per accepted event id: the idempotency key of ingestion, for all event types.

    Partitioned by month on `occurred_month`, the UTC month of the event's own timestamp
    (analytics/partitioning.py; primary key (id, occurred_month) in PostgreSQL), so a receipt
    leaves with the month of the message or activity it produced. A partitioned table's unique
    key must hold the partition key: (org, event id, month) is unique within each month, which
    also settles concurrent retries of an event sent without a timestamp (each attempt gets
    "now"). An id re-sent with a timestamp in another month is a new event (README: the key).
    """

    # Not enforced by PostgreSQL, like Message's keys: ingestion writes it for every event.
    organization = unenforced_fk(Organization)

    event_id = models.UUIDField()
    type = models.CharField(max_length=32)
    occurred_month = models.DateField(default=partitioning.current_month)
    received_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            # Its index also serves the lookup by (org, event id) across the partitions.
            models.UniqueConstraint(
                fields=["organization", "event_id", "occurred_month"],
                name="receipt_unique_event_month",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
