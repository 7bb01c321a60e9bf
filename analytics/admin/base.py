"""The base of every tenant admin, scoped once: org admins see only their own orgs, and change
only what their role allows there (each admin names its `manage_perm`, analytics/roles.py)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import Http404

from analytics.models import (
    Membership,
    Organization,
    TenantModel,
)
from config.admin_site import request_admin_org_ids, request_perm_org_ids


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


class ReadOnlyOrgAdmin(OrgScopedAdmin):
    read_only = True
