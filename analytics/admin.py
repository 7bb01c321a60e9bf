"""Admin for tenant models, scoped once in OrgScopedAdmin: org admins see only their own orgs, and
change only what their role allows there (each admin names its `manage_perm`, analytics/roles.py)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from analytics.models import (
    Activity,
    AlertEvent,
    AlertNotification,
    AlertRule,
    ApiKey,
    Bot,
    BotDailyMetrics,
    BotHourlyRollup,
    Campaign,
    Conversation,
    ConversationMetrics,
    EventReceipt,
    Gauge,
    Membership,
    Message,
    Organization,
    OrgHourlyUsage,
    Role,
    TenantModel,
)
from analytics.roles import can_manage_member, grantable_roles
from analytics.services import alerts as alert_services
from analytics.services import members as member_services
from analytics.services.api_keys import api_key_audit, api_key_issue_secret, api_key_revoke
from analytics.services.audit import audit_record, request_ip
from config.admin_site import request_admin_org_ids, request_admin_roles, request_perm_org_ids


class OrgScopedAdmin(admin.ModelAdmin):
    """Base for every tenant model: rows, choices and permissions follow the user's admin orgs."""

    read_only = False  # rollups and raw events are written by the product, never by hand
    #: the permission an org member needs to add, change (and run actions on) these rows
    manage_perm: str | None = None
    #: the permission to delete them (default: manage_perm)
    delete_perm: str | None = None
    list_per_page = 50
    show_full_result_count = False

    def _org_ids(self, request) -> set[int]:
        return request_admin_org_ids(request)

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(organization_id__in=self._org_ids(request))

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Another org's row and a missing row look the same: 404, not a redirect.
            raise Http404("No such object.")
        return obj

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not request.user.is_superuser:
            org_ids = self._org_ids(request)
            related = db_field.related_model
            if related is Organization:
                kwargs["queryset"] = Organization.objects.filter(pk__in=org_ids)
            elif issubclass(related, TenantModel):
                kwargs["queryset"] = related.objects.filter(organization_id__in=org_ids)
            elif related is get_user_model():
                members = Membership.objects.filter(organization_id__in=org_ids).values("user_id")
                kwargs["queryset"] = related.objects.filter(pk__in=members)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        org_ids = self._org_ids(request)
        if len(org_ids) == 1 and "organization" not in initial:
            initial["organization"] = next(iter(org_ids))
        return initial

    # permissions: superusers follow Django's; org admins manage rows of their own orgs
    def _in_scope(self, request, obj, perm: str | None = None) -> bool:
        org_ids = request_perm_org_ids(request, perm) if perm else self._org_ids(request)
        if obj is None:
            return bool(org_ids)
        return obj.organization_id in org_ids

    def has_module_permission(self, request):
        return request.user.is_superuser or bool(self._org_ids(request))

    def has_view_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        return self._in_scope(request, obj)

    def has_add_permission(self, request):
        if self.read_only:
            return False
        return request.user.is_superuser or self._in_scope(request, None, self.manage_perm)

    def has_change_permission(self, request, obj=None):
        if self.read_only:
            return False
        return request.user.is_superuser or self._in_scope(request, obj, self.manage_perm)

    def has_delete_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        if self.read_only:
            return False
        return self._in_scope(request, obj, self.delete_perm or self.manage_perm)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "timezone",
        "raw_retention_days",
        "rollup_retention_days",
        "created_at",
    )
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(pk__in=request_admin_org_ids(request))

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return ()
        fixed = ("slug", "created_at")
        if obj is None or obj.pk not in request_perm_org_ids(request, "retention.manage"):
            fixed += ("raw_retention_days", "rollup_retention_days")  # owners only
        return fixed

    def get_prepopulated_fields(self, request, obj=None):
        # the slug is read-only for org members (and the whole form for non-owners)
        return self.prepopulated_fields if request.user.is_superuser else {}

    def has_module_permission(self, request):
        return request.user.is_superuser or bool(request_admin_org_ids(request))

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser or bool(request_admin_org_ids(request))

    def has_change_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        org_ids = request_perm_org_ids(request, "org.settings")
        return bool(org_ids) if obj is None else obj.pk in org_ids

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class MembershipForm(forms.ModelForm):
    """Roles offered and accepted follow the matrix: never above the actor's own, owners only by
    owners, and the org keeps an owner (analytics/services/members.py decides)."""

    actor = None  # set by MembershipAdmin.get_form

    class Meta:
        model = Membership
        fields = ("organization", "user", "role", "created_at")

    def clean(self):
        cleaned = super().clean()
        role = cleaned.get("role")
        if role is None:
            return cleaned
        try:
            if self.instance.pk:
                member_services.membership_check_set_role(
                    actor=self.actor, membership=self.instance, role=role
                )
            elif cleaned.get("organization") is not None:
                member_services.membership_check_grant(
                    actor=self.actor, organization=cleaned["organization"], role=role
                )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                raise
            raise ValidationError({"role": exc.messages}) from None
        return cleaned


@admin.register(Membership)
class MembershipAdmin(OrgScopedAdmin):
    form = MembershipForm
    manage_perm = "members.manage"
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__username", "user__email")
    list_select_related = ("user", "organization")

    def _actor_role(self, request, org_id: int) -> str | None:
        return member_services.member_actor_role(request.user, org_id)

    def get_readonly_fields(self, request, obj=None):
        # A membership stays the same person in the same org; only its role changes.
        return ("organization", "user") if obj is not None else ()

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = request.user
        if "role" in form.base_fields:
            if obj is not None:
                allowed = set(grantable_roles(self._actor_role(request, obj.organization_id)))
                allowed.add(obj.role)  # its current role stays visible (it is not a change)
            elif request.user.is_superuser:
                allowed = set(Role.values)
            else:
                allowed = {
                    r
                    for role in request_admin_roles(request).values()
                    for r in grantable_roles(role)
                }
            form.base_fields["role"].choices = [
                (value, label) for value, label in Role.choices if value in allowed
            ]
        return form

    def has_change_permission(self, request, obj=None):
        if not super().has_change_permission(request, obj):
            return False
        if obj is None or request.user.is_superuser:
            return True
        return can_manage_member(self._actor_role(request, obj.organization_id), obj.role)

    def has_delete_permission(self, request, obj=None):
        if not super().has_delete_permission(request, obj):
            return False
        if obj is None:
            return True
        return self._refusal(request, obj) is None

    def _refusal(self, request, obj) -> str | None:
        try:
            member_services.membership_check_remove(actor=request.user, membership=obj)
        except ValidationError as exc:
            return " ".join(exc.messages)
        return None

    def save_model(self, request, obj, form, change):
        if change and "role" in form.changed_data:
            current = Membership.objects.get(pk=obj.pk)
            before = current.role
            member_services.membership_set_role(
                actor=request.user, membership=current, role=obj.role
            )
            self._audit(request, obj, "member.role_changed", {"from": before, "to": obj.role})
        super().save_model(request, obj, form, change)
        if not change:
            self._audit(request, obj, "member.added", {"role": obj.role})

    def _audit(self, request, obj, action, details):
        audit_record(
            org=obj.organization_id,
            actor=request.user,
            action=action,
            target=obj.user.get_username(),
            details=details,
            ip=request_ip(request),
        )

    def get_deleted_objects(self, objs, request):
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        for membership in objs:
            refusal = self._refusal(request, membership)
            if refusal:
                perms_needed.add(f"{membership} — {refusal}")
        return deleted, model_count, perms_needed, protected

    def delete_model(self, request, obj):
        try:
            member_services.membership_remove(actor=request.user, membership=obj)
        except ValidationError as exc:
            raise PermissionDenied(" ".join(exc.messages)) from None
        self._audit(request, obj, "member.removed", {"role": obj.role})

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("user", "organization"):
            self.delete_model(request, membership)


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ("organization", "name", "scopes")


@admin.register(ApiKey)
class ApiKeyAdmin(OrgScopedAdmin):
    form = ApiKeyForm
    manage_perm = "apikeys.manage"
    list_display = (
        "name",
        "organization",
        "prefix",
        "scopes",
        "created_at",
        "last_used_at",
        "is_active",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    @admin.display(boolean=True, description="active")
    def is_active(self, obj):
        return obj.is_active

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (*self.readonly_fields, "organization")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            secret = api_key_issue_secret(obj)
            super().save_model(request, obj, form, change)
            api_key_audit(
                api_key=obj, action="apikey.created", actor=request.user, ip=request_ip(request)
            )
            messages.warning(
                request,
                f"API key “{obj.name}” created. Copy it now — it will not be shown again: {secret}",
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        for api_key in queryset:
            api_key_revoke(api_key=api_key, actor=request.user, ip=request_ip(request))
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Bot)
class BotAdmin(OrgScopedAdmin):
    manage_perm = "bots.manage"
    list_display = ("name", "slug", "organization", "kind", "persona", "channel", "is_active")
    list_filter = ("kind", "channel", "is_active")
    search_fields = ("name", "slug", "persona")
    prepopulated_fields = {"slug": ("name",)}
    list_select_related = ("organization",)


@admin.register(Campaign)
class CampaignAdmin(OrgScopedAdmin):
    manage_perm = "campaigns.manage"
    list_display = ("name", "slug", "organization", "status", "bot")
    list_filter = ("status",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    list_select_related = ("organization", "bot")


@admin.register(Conversation)
class ConversationAdmin(OrgScopedAdmin):
    manage_perm = "bots.manage"
    delete_perm = "org.delete"  # deleting customers' data is an owner's
    list_display = ("external_id", "customer", "bot", "channel", "status", "started_at", "csat")
    list_filter = ("status", "channel", "handoff")
    search_fields = ("external_id", "customer")
    date_hierarchy = "started_at"
    list_select_related = ("bot",)
    raw_id_fields = ()


class ReadOnlyOrgAdmin(OrgScopedAdmin):
    read_only = True


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


# --- alerts (issue 7) --------------------------------------------------------------------------


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
