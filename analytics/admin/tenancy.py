"""Admin for organizations, members and API keys."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from analytics.admin.base import OrgScopedAdmin
from analytics.models import (
    ApiKey,
    Membership,
    Organization,
    Role,
)
from analytics.roles import can_manage_member, grantable_roles
from analytics.services import members as member_services
from analytics.services.api_keys import api_key_audit, api_key_issue_secret, api_key_revoke
from analytics.services.audit import audit_record, request_ip
from config.admin_site import request_admin_org_ids, request_admin_roles, request_perm_org_ids


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
