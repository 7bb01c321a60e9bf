"""Role changes and removals follow the matrix: no one grants above their own role, only owners
touch owners, and an org always keeps an owner."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from analytics.models import Membership, Role
from analytics.services.members import (
    membership_check_grant,
    membership_remove,
    membership_set_role,
)
from tests import factories as f


def member(org, role, username):
    return f.MembershipFactory(organization=org, user=f.UserFactory(username=username), role=role)


def test_it_refuses_an_admin_promoting_itself_to_owner(org, alice):
    erin = member(org, Role.ADMIN, "erin")
    with pytest.raises(ValidationError, match=r"Your role \(admin\) cannot give the owner role"):
        membership_set_role(actor=erin.user, membership=erin, role=Role.OWNER)
    erin.refresh_from_db()
    assert erin.role == Role.ADMIN


def test_it_refuses_an_admin_demoting_the_owner(org, alice):
    erin = member(org, Role.ADMIN, "erin")
    owner = Membership.objects.get(user=alice)
    with pytest.raises(ValidationError, match="Only an owner can change or remove an owner"):
        membership_set_role(actor=erin.user, membership=owner, role=Role.VIEWER)
    with pytest.raises(ValidationError, match="Only an owner can change or remove an owner"):
        membership_remove(actor=erin.user, membership=owner)
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_it_lets_an_admin_manage_members_below_owner(org, alice):
    erin = member(org, Role.ADMIN, "erin")
    dave = member(org, Role.VIEWER, "dave")
    membership_set_role(actor=erin.user, membership=dave, role=Role.ADMIN)
    assert Membership.objects.get(pk=dave.pk).role == Role.ADMIN
    membership_set_role(actor=erin.user, membership=dave, role=Role.ANALYST)
    membership_remove(actor=erin.user, membership=dave)
    assert not Membership.objects.filter(pk=dave.pk).exists()


def test_it_refuses_analysts_and_viewers_managing_members(org, alice):
    dave = member(org, Role.ANALYST, "dave")
    bob = member(org, Role.VIEWER, "bob")
    with pytest.raises(ValidationError, match=r"Your role \(analyst\) does not allow"):
        membership_set_role(actor=dave.user, membership=bob, role=Role.ANALYST)
    with pytest.raises(ValidationError, match=r"Your role \(viewer\) does not allow"):
        membership_set_role(actor=bob.user, membership=bob, role=Role.ANALYST)
    with pytest.raises(ValidationError, match=r"Your role \(analyst\) does not allow"):
        membership_remove(actor=dave.user, membership=bob)


def test_it_refuses_outsiders(org, alice, charlie):
    bob = member(org, Role.VIEWER, "bob")
    with pytest.raises(ValidationError, match="not a member of this organization"):
        membership_set_role(actor=charlie, membership=bob, role=Role.ADMIN)


def test_it_never_leaves_an_org_without_an_owner(org, alice):
    owner = Membership.objects.get(user=alice)
    with pytest.raises(ValidationError, match="last owner of Acme"):
        membership_set_role(actor=alice, membership=owner, role=Role.ADMIN)
    with pytest.raises(ValidationError, match="last owner of Acme"):
        membership_remove(actor=alice, membership=owner)
    superuser = f.UserFactory(username="root", is_superuser=True, is_staff=True)
    with pytest.raises(ValidationError, match="last owner of Acme"):
        membership_remove(actor=superuser, membership=owner)
    assert Membership.objects.get(pk=owner.pk).role == Role.OWNER


def test_it_lets_an_owner_step_down_when_another_owner_remains(org, alice):
    second = member(org, Role.ADMIN, "olga")
    owner = Membership.objects.get(user=alice)
    membership_set_role(actor=alice, membership=second, role=Role.OWNER)
    membership_set_role(actor=alice, membership=owner, role=Role.ADMIN)
    assert Membership.objects.get(pk=owner.pk).role == Role.ADMIN
    assert Membership.objects.get(pk=second.pk).role == Role.OWNER


def test_it_lets_a_member_leave(org, alice):
    bob = member(org, Role.VIEWER, "bob")
    membership_remove(actor=bob.user, membership=bob)
    assert not Membership.objects.filter(pk=bob.pk).exists()


def test_it_checks_a_grant_for_new_members(org, alice):
    erin = member(org, Role.ADMIN, "erin")
    membership_check_grant(actor=erin.user, organization=org, role=Role.ADMIN)
    with pytest.raises(ValidationError, match="cannot give the owner role"):
        membership_check_grant(actor=erin.user, organization=org, role=Role.OWNER)
    membership_check_grant(actor=alice, organization=org, role=Role.OWNER)
