"""The one resolver from a user (or API key) to an organization. Outsiders get 404."""

from __future__ import annotations

from django.http import Http404

from analytics.models import ADMIN_ROLES, Membership, Organization


def get_org_for_user(user, org_slug: str) -> Organization:
    """The org with this slug if `user` is a member; 404 otherwise (same as "does not exist")."""
    if user is None or not user.is_authenticated:
        raise Http404("No such organization.")
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=user, organization__slug=org_slug)
        .first()
    )
    if membership is None:
        raise Http404("No such organization.")
    return membership.organization


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
