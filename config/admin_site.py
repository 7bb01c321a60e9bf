"""The admin site: platform staff see everything; org owners/admins manage their own org only."""

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from analytics.models import ADMIN_ROLES, Membership
from analytics.roles import role_allows
from analytics.tenancy import admin_org_ids


def can_use_admin(request) -> bool:
    user = request.user
    if not (user.is_active and user.is_authenticated):
        return False
    if user.is_staff:
        return True
    return bool(request_admin_org_ids(request))


def request_admin_org_ids(request) -> set[int]:
    """The user's admin orgs, looked up once per request."""
    if not hasattr(request, "_admin_org_ids"):
        request._admin_org_ids = admin_org_ids(request.user)
    return request._admin_org_ids


def request_admin_roles(request) -> dict[int, str]:
    """org id -> the user's role there, for the orgs they may manage in admin (once per request)."""
    if not hasattr(request, "_admin_roles"):
        user = request.user
        request._admin_roles = (
            dict(
                Membership.objects.filter(user=user, role__in=ADMIN_ROLES).values_list(
                    "organization_id", "role"
                )
            )
            if user.is_authenticated and user.is_active
            else {}
        )
    return request._admin_roles


def request_perm_org_ids(request, perm: str) -> set[int]:
    """The admin orgs where the user's role holds `perm` (analytics/roles.py)."""
    return {
        org_id for org_id, role in request_admin_roles(request).items() if role_allows(role, perm)
    }


class OrgAdminAuthenticationForm(AdminAuthenticationForm):
    def confirm_login_allowed(self, user):
        if not user.is_active:
            raise ValidationError(self.error_messages["inactive"], code="inactive")
        if not (user.is_staff or admin_org_ids(user)):
            raise ValidationError(
                "This account cannot manage any organization. Ask an owner to make you an admin.",
                code="invalid_login",
            )


class BotFlowAdminSite(admin.AdminSite):
    site_header = "BotFlow Analytics admin"
    site_title = "BotFlow admin"
    index_title = "Manage"
    login_form = OrgAdminAuthenticationForm

    def has_permission(self, request):
        return can_use_admin(request)
