"""Admin for what the product writes: raw events, receipts, metrics, rollups and the erasure
audit trail; read-only for everyone but staff."""

from __future__ import annotations

from django.contrib import admin

from analytics.admin.base import ReadOnlyOrgAdmin
from analytics.models import (
    Activity,
    BotDailyMetrics,
    BotHourlyRollup,
    ConversationMetrics,
    CustomerErasure,
    EventReceipt,
    Gauge,
    Message,
    OrgHourlyUsage,
)


@admin.register(Message)
class MessageAdmin(ReadOnlyOrgAdmin):
    list_display = ("created_at", "bot", "direction", "outcome", "response_time_ms", "tokens")
    list_filter = ("direction", "outcome")
    list_select_related = ("bot",)
    raw_id_fields = ("conversation",)


@admin.register(Activity)
class ActivityAdmin(ReadOnlyOrgAdmin):
    list_display = ("created_at", "bot", "kind", "description", "customer", "value")
    list_filter = ("kind",)
    list_select_related = ("bot",)


@admin.register(Gauge)
class GaugeAdmin(ReadOnlyOrgAdmin):
    list_display = ("created_at", "name", "value", "bot", "campaign")
    list_select_related = ("bot", "campaign")


@admin.register(EventReceipt)
class EventReceiptAdmin(ReadOnlyOrgAdmin):
    list_display = ("received_at", "occurred_month", "type", "event_id")
    search_fields = ("event_id",)


@admin.register(CustomerErasure)
class CustomerErasureAdmin(ReadOnlyOrgAdmin):
    """The erasure audit trail: who asked, when, and how much went; never the customer."""

    list_display = ("created_at", "organization", "actor_label", "counts")
    list_select_related = ("organization",)
    search_fields = ("actor_label",)


@admin.register(ConversationMetrics)
class ConversationMetricsAdmin(ReadOnlyOrgAdmin):
    list_display = ("conversation", "bot", "started_at", "total_messages", "p95_response_time_ms")
    raw_id_fields = ("conversation",)
    list_select_related = ("bot", "conversation")


@admin.register(BotHourlyRollup)
class BotHourlyRollupAdmin(ReadOnlyOrgAdmin):
    list_display = ("hour", "bot", "messages_in", "messages_out", "successes", "failures", "tokens")
    list_select_related = ("bot",)


@admin.register(BotDailyMetrics)
class BotDailyMetricsAdmin(ReadOnlyOrgAdmin):
    list_display = ("date", "bot", "total_conversations", "total_messages", "p95_response_time_ms")
    list_select_related = ("bot",)


@admin.register(OrgHourlyUsage)
class OrgHourlyUsageAdmin(ReadOnlyOrgAdmin):
    list_display = ("hour", "organization", "messages_sent", "messages_received", "active_users")
