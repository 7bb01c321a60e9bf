"""Admin for alert rules, alert events and their notifications (issue 7)."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from analytics.admin.base import OrgScopedAdmin, ReadOnlyOrgAdmin
from analytics.models import (
    AlertEvent,
    AlertNotification,
    AlertRule,
)
from analytics.services import alerts as alert_services
from analytics.services.audit import request_ip
from config.admin_site import request_perm_org_ids


class AlertRuleForm(forms.ModelForm):
    """The model's checks (no I/O), then the service's look-up of where a webhook goes."""

    class Meta:
        model = AlertRule
        fields = (
            "organization",
            "name",
            "metric",
            "bot",
            "campaign",
            "comparison",
            "warning_threshold",
            "critical_threshold",
            "window_minutes",
            "cooldown_minutes",
            "hysteresis_percent",
            "email_recipients",
            "webhook_url",
            "webhook_secret",
            "enabled",
            "muted_until",
            "created_by",
            "created_at",
        )

    def _post_clean(self):
        super()._post_clean()
        url = self.cleaned_data.get("webhook_url")
        if url and "webhook_url" not in self.errors:
            for problem in alert_services.webhook_url_check(url):
                self.add_error("webhook_url", problem)


@admin.register(AlertRule)
class AlertRuleAdmin(OrgScopedAdmin):
    form = AlertRuleForm
    manage_perm = "alerts.manage"
    list_display = (
        "name",
        "organization",
        "metric",
        "bot",
        "campaign",
        "state",
        "enabled",
        "muted_until",
        "last_value",
        "last_evaluated_at",
    )
    list_filter = ("metric", "state", "enabled")
    search_fields = ("name",)
    list_select_related = ("organization", "bot", "campaign")
    readonly_fields = ("state", "last_value", "last_evaluated_at", "last_notified_at", "created_by")
    actions = ("mute_one_hour", "unmute")

    def save_model(self, request, obj, form, change):
        who = {"actor": request.user, "ip": request_ip(request)}
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            alert_services.alert_rule_update(rule=obj, changes=changes, **who)
        else:
            obj.created_by = request.user
            alert_services.alert_rule_create(rule=obj, **who)

    def delete_model(self, request, obj):
        alert_services.alert_rule_delete(rule=obj, actor=request.user, ip=request_ip(request))

    def delete_queryset(self, request, queryset):
        for rule in queryset.select_related("organization"):
            self.delete_model(request, rule)

    @admin.action(description="Mute selected rules for one hour", permissions=["change"])
    def mute_one_hour(self, request, queryset):
        for rule in queryset.select_related("organization"):
            alert_services.alert_rule_mute(rule=rule, duration=alert_services.MUTE_CHOICES["1h"])

    @admin.action(description="Unmute selected rules", permissions=["change"])
    def unmute(self, request, queryset):
        for rule in queryset.select_related("organization"):
            alert_services.alert_rule_mute(rule=rule, duration=None)


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyOrgAdmin):
    list_display = (
        "rule_name",
        "organization",
        "severity",
        "status",
        "value",
        "threshold",
        "started_at",
        "resolved_at",
        "acknowledged_at",
    )
    list_filter = ("status", "severity")
    search_fields = ("rule_name",)
    actions = ("acknowledge",)

    def get_actions(self, request):
        # read-only rows, but acknowledging is an action org admins may take
        actions = super().get_actions(request)
        if "delete_selected" in actions and not request.user.is_superuser:
            del actions["delete_selected"]
        return actions

    def has_ack_permission(self, request):
        return request.user.is_superuser or bool(request_perm_org_ids(request, "alerts.ack"))

    @admin.action(description="Acknowledge selected alerts", permissions=["ack"])
    def acknowledge(self, request, queryset):
        if not request.user.is_superuser:
            queryset = queryset.filter(
                organization_id__in=request_perm_org_ids(request, "alerts.ack")
            )
        for event in queryset:
            alert_services.alert_event_acknowledge(event=event, user=request.user)


@admin.register(AlertNotification)
class AlertNotificationAdmin(ReadOnlyOrgAdmin):
    list_display = (
        "created_at",
        "organization",
        "channel",
        "kind",
        "target_masked",
        "status",
        "attempts",
        "last_error",
    )
    list_filter = ("channel", "status", "kind")
    raw_id_fields = ("event",)

    @admin.display(description="target")
    def target_masked(self, obj):
        """A webhook URL often holds a secret: the list shows only where it goes."""
        if obj.channel == AlertNotification.Channel.WEBHOOK:
            return alert_services.webhook_url_masked(obj.target)
        return obj.target
