"""The catalog of an org: its bots, campaigns and API keys."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.timezone import now

from analytics.models.tenancy import TenantModel


class ApiKey(TenantModel):
    class Scope(models.TextChoices):
        INGEST = "ingest", "Ingest events"
        READ = "read", "Read analytics"
        ALERTS = "alerts", "Manage alert rules"
        ADMIN = "admin", "Erase and export customer data"

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
