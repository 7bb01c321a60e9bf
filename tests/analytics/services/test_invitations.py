"""Invitations: the email carries a one-time link that works for 7 days and gives the invited
role in the inviting org, never more than the inviter may give."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from analytics.models import AuditEvent, Invitation, Membership, Role
from analytics.services.invitations import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    invitations_pending,
)
from tests import factories as f

LINK = re.compile(r"https?://\S+/invite/([A-Za-z0-9_-]+)/")


def member(org, role, username):
    return f.MembershipFactory(organization=org, user=f.UserFactory(username=username), role=role)


def token_of(email) -> str:
    return LINK.search(email.body).group(1)


def test_it_emails_the_invitee_a_link_and_stores_only_its_hash(org, alice, mailoutbox, settings):
    settings.SITE_URL = "https://botflow.example.com"

    sent = invitation_create(
        org=org, actor=alice, email="Dana@Example.COM", role=Role.ANALYST, request_ip="10.0.0.5"
    )

    assert len(mailoutbox) == 1
    email = mailoutbox[0]
    assert email.to == ["Dana@example.com"]
    assert "alice invited you to Acme" in email.subject
    assert "as analyst" in email.body
    token = token_of(email)
    assert f"https://botflow.example.com/invite/{token}/" in email.body
    assert sent.url == f"https://botflow.example.com/invite/{token}/"
    invitation = Invitation.objects.get()
    assert token not in invitation.token_hash and len(invitation.token_hash) == 64
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)
    entry = AuditEvent.objects.for_org(org).get(action="member.invited")
    assert (entry.actor_label, entry.target, entry.details, entry.ip_address) == (
        "alice",
        "Dana@example.com",
        {"role": "analyst"},
        "10.0.0.5",
    )


def test_it_uses_the_request_host_without_a_site_url(org, alice, mailoutbox, settings):
    settings.SITE_URL = ""
    invitation_create(
        org=org,
        actor=alice,
        email="dana@example.com",
        role=Role.VIEWER,
        base_url="http://testserver/",
    )
    assert f"http://testserver/invite/{token_of(mailoutbox[0])}/" in mailoutbox[0].body


def test_it_gives_a_new_account_the_invited_role(org, alice, mailoutbox):
    invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.ANALYST)

    membership = invitation_accept(
        token=token_of(mailoutbox[0]), username="dana", password="a-long-secret-97", ip="10.0.0.9"
    )

    dana = get_user_model().objects.get(username="dana")
    assert dana.email == "dana@example.com"
    assert dana.check_password("a-long-secret-97")
    assert (membership.organization, membership.user, membership.role) == (org, dana, "analyst")
    joined = AuditEvent.objects.for_org(org).get(action="member.joined")
    assert (joined.actor, joined.target, joined.details["role"], joined.ip_address) == (
        dana,
        "dana",
        "analyst",
        "10.0.0.9",
    )
    assert list(invitations_pending(org=org)) == []


def test_it_refuses_the_link_a_second_time(org, alice, mailoutbox):
    invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.VIEWER)
    token = token_of(mailoutbox[0])
    invitation_accept(token=token, username="dana", password="a-long-secret-97")

    with pytest.raises(ValidationError, match="already been used"):
        invitation_accept(token=token, username="mallory", password="a-long-secret-97")
    assert not get_user_model().objects.filter(username="mallory").exists()
    assert Membership.objects.for_org(org).count() == 2  # alice and dana


def test_it_refuses_an_expired_link(org, alice, mailoutbox):
    invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.VIEWER)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(ValidationError, match="expired"):
        invitation_accept(token=token_of(mailoutbox[0]), username="dana", password="a-long-97-x")
    assert not get_user_model().objects.filter(username="dana").exists()


def test_it_refuses_a_revoked_link_and_a_made_up_one(org, alice, mailoutbox):
    sent = invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.VIEWER)
    invitation_revoke(actor=alice, invitation=sent.invitation, ip="10.0.0.5")

    with pytest.raises(ValidationError, match="withdrawn"):
        invitation_accept(token=token_of(mailoutbox[0]), username="dana", password="a-long-97-x")
    with pytest.raises(ValidationError, match="not valid"):
        invitation_accept(token="made-up-token", username="dana", password="a-long-97-x")
    assert AuditEvent.objects.for_org(org).filter(action="invitation.revoked").count() == 1


def test_it_replaces_a_pending_invitation_when_inviting_again(org, alice, mailoutbox):
    invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.VIEWER)
    invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.ANALYST)

    assert [i.role for i in invitations_pending(org=org)] == ["analyst"]
    with pytest.raises(ValidationError, match="withdrawn"):
        invitation_accept(token=token_of(mailoutbox[0]), username="dana", password="a-long-97-x")
    membership = invitation_accept(
        token=token_of(mailoutbox[1]), username="dana", password="a-long-secret-97"
    )
    assert membership.role == Role.ANALYST


def test_it_refuses_an_admin_inviting_an_owner(org, alice, mailoutbox):
    erin = member(org, Role.ADMIN, "erin")

    with pytest.raises(ValidationError, match=r"Your role \(admin\) cannot give the owner role"):
        invitation_create(org=org, actor=erin.user, email="dana@example.com", role=Role.OWNER)
    assert mailoutbox == []
    assert not Invitation.objects.exists()
    # but an admin may invite an admin
    invitation_create(org=org, actor=erin.user, email="dana@example.com", role=Role.ADMIN)
    assert len(mailoutbox) == 1


@pytest.mark.parametrize("role", [Role.ANALYST, Role.VIEWER])
def test_it_refuses_an_invitation_from_a_member_below_admin(org, role, mailoutbox):
    someone = member(org, role, "sam")
    with pytest.raises(ValidationError, match="does not allow managing members"):
        invitation_create(org=org, actor=someone.user, email="dana@example.com", role=Role.VIEWER)
    assert mailoutbox == []


def test_it_refuses_an_outsider_inviting_into_another_org(org, charlie, mailoutbox):
    with pytest.raises(ValidationError, match="not a member of this organization"):
        invitation_create(org=org, actor=charlie, email="dana@example.com", role=Role.VIEWER)
    assert mailoutbox == []


def test_it_joins_only_the_org_that_sent_the_link(org, other_org, alice, charlie, mailoutbox):
    invitation_create(org=other_org, actor=charlie, email="dana@example.com", role=Role.ADMIN)

    membership = invitation_accept(
        token=token_of(mailoutbox[0]), username="dana", password="a-long-secret-97"
    )

    assert membership.organization == other_org
    assert not Membership.objects.for_org(org).filter(user=membership.user).exists()


def test_it_refuses_a_signed_in_user_whose_email_was_not_invited(org, alice, bob, mailoutbox):
    invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.ADMIN)
    mallory = f.UserFactory(username="mallory", email="mallory@example.com")

    with pytest.raises(ValidationError, match="This invitation is for dana@example.com"):
        invitation_accept(token=token_of(mailoutbox[0]), user=mallory)
    assert not Membership.objects.filter(user=mallory).exists()


def test_it_lets_an_existing_account_with_the_invited_email_join(org, other_org, alice, mailoutbox):
    dana = f.UserFactory(username="dana", email="dana@example.com")
    f.MembershipFactory(organization=other_org, user=dana, role=Role.OWNER)
    invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.VIEWER)

    membership = invitation_accept(token=token_of(mailoutbox[0]), user=dana)

    assert (membership.organization, membership.user, membership.role) == (org, dana, "viewer")


def test_it_refuses_inviting_someone_already_in_the_org(org, alice, bob, mailoutbox):
    with pytest.raises(ValidationError, match="BOB@example.com is already a member of Acme"):
        invitation_create(org=org, actor=alice, email="BOB@example.com", role=Role.ADMIN)
    assert mailoutbox == []


def test_it_reports_a_taken_username_and_a_weak_password(org, alice, bob, mailoutbox):
    invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.VIEWER)

    with pytest.raises(ValidationError) as caught:
        invitation_accept(token=token_of(mailoutbox[0]), username="Bob", password="123")
    errors = caught.value.message_dict
    assert errors["username"] == ["That username is taken; choose another."]
    assert any("too short" in message for message in errors["password"])
    assert Invitation.objects.get().accepted_at is None  # the link still works


def test_it_refuses_an_invalid_email(org, alice, mailoutbox):
    with pytest.raises(ValidationError, match="Enter a valid email address"):
        invitation_create(org=org, actor=alice, email="not an email", role=Role.VIEWER)
    assert mailoutbox == []


def test_it_lets_only_owners_withdraw_an_owner_invitation(org, alice, mailoutbox):
    sent = invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.OWNER)
    erin = member(org, Role.ADMIN, "erin")

    with pytest.raises(ValidationError, match="cannot withdraw"):
        invitation_revoke(actor=erin.user, invitation=sent.invitation)
    assert [i.email for i in invitations_pending(org=org)] == ["dana@example.com"]


def test_it_asks_an_existing_account_to_sign_in_instead_of_making_another(org, alice, mailoutbox):
    f.UserFactory(username="dana", email="dana@example.com")
    invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.VIEWER)

    with pytest.raises(ValidationError, match="already has an account: sign in to accept"):
        invitation_accept(token=token_of(mailoutbox[0]), username="dana2", password="a-long-97-x")
    assert get_user_model().objects.filter(email="dana@example.com").count() == 1
