"""Members: changing a role or removing someone follows the role matrix (analytics/roles.py).

No one grants a role above their own; only owners change or remove owners; an org always keeps
at least one owner. Product pages and Django admin both go through these functions.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from analytics.models import Membership, Organization, Role
from analytics.roles import can_manage_member, grantable_roles, role_allows


def member_actor_role(actor, organization: Organization | int) -> str | None:
    """The role `actor` acts with in the org: their membership's role; platform superusers act
    as owners everywhere; None for anyone else."""
    if actor is None or not actor.is_authenticated or not actor.is_active:
        return None
    if actor.is_superuser:
        return Role.OWNER
    org_id = organization if isinstance(organization, int) else organization.pk
    return (
        Membership.objects.filter(user=actor, organization_id=org_id)
        .values_list("role", flat=True)
        .first()
    )


def membership_check_grant(*, actor, organization: Organization | int, role: str) -> None:
    """Raise ValidationError unless `actor` may give `role` to someone in the org (for new
    members and invitations as well as role changes)."""
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role “{role}”."}, code="unknown_role")
    actor_role = member_actor_role(actor, organization)
    if not role_allows(actor_role, "members.manage"):
        raise ValidationError(_not_allowed(actor_role), code="not_allowed")
    if role not in grantable_roles(actor_role):
        raise ValidationError(
            {"role": f"Your role ({actor_role}) cannot give the {role} role."},
            code="role_too_high",
        )


def membership_check_set_role(*, actor, membership: Membership, role: str) -> None:
    """Raise ValidationError unless `actor` may give `membership` the `role` (writes nothing; for
    forms that show the refusal as a field error before saving)."""
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role “{role}”."}, code="unknown_role")
    if membership.role == role:
        return
    _check_manage(member_actor_role(actor, membership.organization_id), membership, new_role=role)
    if membership.role == Role.OWNER:
        _keep_an_owner(membership, "demote")


def membership_check_remove(*, actor, membership: Membership) -> None:
    """Raise ValidationError unless `actor` may remove `membership` (writes nothing). Anyone may
    leave an org, unless they are its last owner."""
    if not (actor is not None and actor.pk == membership.user_id):
        actor_role = member_actor_role(actor, membership.organization_id)
        _check_manage(actor_role, membership, new_role=None)
    if membership.role == Role.OWNER:
        _keep_an_owner(membership, "remove")


@transaction.atomic
def membership_set_role(*, actor, membership: Membership, role: str) -> Membership:
    """Give `membership` the new `role`, as `actor`; ValidationError with a clear message when the
    matrix refuses it or it would leave the org without an owner."""
    locked = _lock(membership)
    membership_check_set_role(actor=actor, membership=locked, role=role)
    if locked.role != role:
        locked.role = role
        locked.save(update_fields=["role"])
    membership.role = role
    return locked


@transaction.atomic
def membership_remove(*, actor, membership: Membership) -> None:
    """Remove `membership` from its org, as `actor` (anyone may leave, unless they are the last
    owner); ValidationError when the matrix refuses it."""
    locked = _lock(membership)
    membership_check_remove(actor=actor, membership=locked)
    locked.delete()


def _lock(membership: Membership) -> Membership:
    # Lock the org's owner rows too, so two owners demoting each other at once cannot both win.
    list(
        Membership.objects.select_for_update()
        .filter(organization_id=membership.organization_id, role=Role.OWNER)
        .values_list("pk", flat=True)
    )
    try:
        return (
            Membership.objects.select_for_update()
            .select_related("user", "organization")
            .get(pk=membership.pk)
        )
    except Membership.DoesNotExist:
        raise ValidationError(
            "This member is no longer in the organization.", code="gone"
        ) from None


def _check_manage(actor_role: str | None, membership: Membership, *, new_role: str | None):
    if not role_allows(actor_role, "members.manage"):
        raise ValidationError(_not_allowed(actor_role), code="not_allowed")
    if membership.role == Role.OWNER and not role_allows(actor_role, "owners.manage"):
        raise ValidationError(
            "Only an owner can change or remove an owner.", code="owner_protected"
        )
    if not can_manage_member(actor_role, membership.role, new_role):
        raise ValidationError(
            {"role": f"Your role ({actor_role}) cannot give the {new_role} role."},
            code="role_too_high",
        )


def _keep_an_owner(membership: Membership, verb: str) -> None:
    others = (
        Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )
    if not others:
        raise ValidationError(
            f"Cannot {verb} {membership.user}: they are the last owner of "
            f"{membership.organization}. Make another member an owner first.",
            code="last_owner",
        )


def _not_allowed(actor_role: str | None) -> str:
    if actor_role is None:
        return "You are not a member of this organization."
    return f"Your role ({actor_role}) does not allow managing members."
