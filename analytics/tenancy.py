"""The one resolver from a user (or API key) to an organization. Outsiders get 404."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from analytics.models import ADMIN_ROLES, Membership, Organization
from analytics.roles import role_allows


def get_membership(user, org_slug: str) -> Membership:
    """The user's membership of the org with this slug; 404 for anyone outside it (the same
    answer as "does not exist")."""
    if user is None or not user.is_authenticated or not user.is_active:
        raise Http404("No such organization.")
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=user, organization__slug=org_slug)
        .first()
    )
    if membership is None:
        raise Http404("No such organization.")
    return membership


def get_org_for_user(user, org_slug: str, perm: str = "org.view") -> Organization:
    """The org with this slug if `user` is a member holding `perm`; 404 for outsiders, 403 for
    a member whose role lacks it (analytics/roles.py)."""
    membership = get_membership(user, org_slug)
    if not role_allows(membership.role, perm):
        raise PermissionDenied(f"Your role ({membership.role}) does not allow this.")
    return membership.organization


def member_role(user, org) -> str | None:
    """The user's role in `org`, or None when they are not a member."""
    if user is None or not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(user=user, organization=org)
        .values_list("role", flat=True)
        .first()
    )


def user_can(user, org, perm: str) -> bool:
    """Whether `user` holds `perm` in `org` (platform superusers hold every permission)."""
    if user is not None and user.is_authenticated and user.is_superuser:
        return True
    return role_allows(member_role(user, org), perm)


def orgs_for_user(user) -> list[Organization]:
    if not user.is_authenticated:
        return []
    org_ids = Membership.objects.filter(user=user).values("organization_id")
    return list(Organization.objects.filter(pk__in=org_ids).order_by("name"))


def admin_org_ids(user) -> set[int]:
    """Ids of the orgs where `user` is an owner or admin (what they may manage in /admin/)."""
    if not user.is_authenticated or not user.is_active:
        return set()
    return set(
        Membership.objects.filter(user=user, role__in=ADMIN_ROLES).values_list(
            "organization_id", flat=True
        )
    )
