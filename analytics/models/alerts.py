"""Alerting: rules on a metric, the events they fire and the notifications sent about them."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now

from analytics.alert_checks import alert_rule_check
from analytics.models.catalog import Bot, Campaign
from analytics.models.tenancy import TenantModel


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
        Bot,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Only this bot (leave empty for the whole organization).",
    )
    campaign = models.ForeignKey(
        Campaign,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Only this campaign (queue depth: its gauge; other metrics: its bot).",
    )
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
