"""The team page: owners and admins see the members, change roles (never above their own),
remove members, invite by email and withdraw invitations; nobody else gets in."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from analytics.models import AuditEvent, Invitation, Membership, Role
from tests import factories as f

LINK = re.compile(r"http://testserver/invite/([A-Za-z0-9_-]+)/")


def member(org, role, username):
    return f.MembershipFactory(organization=org, user=f.UserFactory(username=username), role=role)


@pytest.fixture
def erin(org):
    """An admin of `org`."""
    return member(org, Role.ADMIN, "erin")


@pytest.fixture
def ann(org):
    """An analyst of `org`."""
    return member(org, Role.ANALYST, "ann")


def team_url(org):
    return reverse("dashboard:team", args=[org.slug])


def member_url(org, membership):
    return reverse("dashboard:team_member", args=[org.slug, membership.pk])


def row_text(html: str, membership) -> str:
    match = re.search(rf'<tr id="member-{membership.pk}".*?</tr>', html, re.S)
    assert match, f"no row for {membership.user}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(0)).split())


def test_it_lists_members_with_their_roles(client, org, alice, bob, erin):
    client.force_login(erin.user)

    response = client.get(team_url(org))

    assert response.status_code == 200
    html = response.content.decode()
    assert "alice" in row_text(html, Membership.objects.get(user=alice))
    assert "Owner" in row_text(html, Membership.objects.get(user=alice))
    assert "Viewer" in row_text(html, Membership.objects.get(user=bob))
    assert "erin (you)" in row_text(html, erin)
    # an admin is offered roles up to admin, and cannot touch the owner's row
    bob_row = re.search(r'<select id="role-\d+" name="role">(.*?)</select>', html, re.S).group(1)
    assert re.findall(r'value="(\w+)"', bob_row) == ["viewer", "analyst", "admin"]
    assert "Only owners change owners" in row_text(html, Membership.objects.get(user=alice))
    assert 'href="/o/acme/team/"' in html and 'href="/o/acme/audit/"' not in html  # nav


def test_it_lets_an_admin_change_an_analyst_to_viewer(client, org, alice, erin, ann):
    client.force_login(erin.user)

    response = client.post(member_url(org, ann), {"action": "role", "role": "viewer"}, follow=True)

    assert response.status_code == 200
    assert "ann is now viewer." in response.content.decode()
    ann.refresh_from_db()
    assert ann.role == Role.VIEWER
    assert "Viewer" in row_text(response.content.decode(), ann)
    entry = AuditEvent.objects.for_org(org).get(action="member.role_changed")
    assert (entry.actor_label, entry.target, entry.details, entry.ip_address) == (
        "erin",
        "ann",
        {"from": "analyst", "to": "viewer"},
        "127.0.0.1",
    )


def test_it_refuses_an_admin_promoting_to_owner(client, org, alice, erin, ann):
    client.force_login(erin.user)

    for target in (ann, erin):
        response = client.post(member_url(org, target), {"action": "role", "role": "owner"})
        assert response.status_code == 400
        assert "Your role (admin) cannot give the owner role." in response.content.decode()
    assert set(Membership.objects.for_org(org).values_list("role", flat=True)) == {
        "owner",
        "admin",
        "analyst",
    }
    assert not AuditEvent.objects.filter(action="member.role_changed").exists()


def test_it_refuses_an_admin_demoting_or_removing_the_owner(client, org, alice, erin):
    client.force_login(erin.user)
    owner = Membership.objects.get(user=alice)

    for data in ({"action": "role", "role": "viewer"}, {"action": "remove"}):
        response = client.post(member_url(org, owner), data)
        assert response.status_code == 400
        assert "Only an owner can change or remove an owner." in response.content.decode()
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_it_lets_an_owner_make_another_owner(client, org, alice, erin):
    client.force_login(alice)
    response = client.post(member_url(org, erin), {"action": "role", "role": "owner"})
    assert response.status_code == 302
    erin.refresh_from_db()
    assert erin.role == Role.OWNER


def test_it_removes_a_member(client, org, alice, bob, erin):
    client.force_login(erin.user)
    bob_membership = Membership.objects.get(user=bob)

    response = client.post(member_url(org, bob_membership), {"action": "remove"}, follow=True)

    html = response.content.decode()
    assert "bob was removed from Acme." in html
    assert 'data-username="bob"' not in html
    assert not Membership.objects.filter(pk=bob_membership.pk).exists()
    entry = AuditEvent.objects.for_org(org).get(action="member.removed")
    assert (entry.actor_label, entry.target, entry.details) == ("erin", "bob", {"role": "viewer"})
    client.force_login(bob)
    assert client.get(reverse("dashboard:org_dashboard", args=[org.slug])).status_code == 404


def test_it_keeps_the_last_owner(client, org, alice):
    client.force_login(alice)
    response = client.post(
        member_url(org, Membership.objects.get(user=alice)), {"action": "remove"}
    )
    assert response.status_code == 400
    assert "they are the last owner of Acme" in response.content.decode()


def test_it_sends_an_invitation_from_the_form(client, org, alice, erin, mailoutbox):
    client.force_login(erin.user)

    response = client.post(
        reverse("dashboard:team", args=[org.slug]),
        {"email": "dana@example.com", "role": "analyst"},
        follow=True,
    )

    html = response.content.decode()
    assert "Invitation sent to dana@example.com as analyst." in html
    assert re.search(r'<tr id="invitation-\d+">\s*<th scope="row">dana@example.com</th>', html)
    assert len(mailoutbox) == 1 and LINK.search(mailoutbox[0].body)
    entry = AuditEvent.objects.for_org(org).get(action="member.invited")
    assert (entry.actor_label, entry.target, entry.ip_address) == (
        "erin",
        "dana@example.com",
        "127.0.0.1",
    )


def test_it_refuses_an_admin_inviting_an_owner_with_a_message(client, org, alice, erin, mailoutbox):
    client.force_login(erin.user)

    response = client.post(
        reverse("dashboard:team", args=[org.slug]),
        {"email": "dana@example.com", "role": "owner"},
    )

    assert response.status_code == 400
    assert "Your role (admin) cannot give the owner role." in response.content.decode()
    assert mailoutbox == [] and not Invitation.objects.exists()


def test_it_shows_field_errors_for_a_bad_invitation(client, org, alice, mailoutbox):
    client.force_login(alice)
    response = client.post(
        reverse("dashboard:team", args=[org.slug]),
        {"email": "not-an-email\x00", "role": "boss"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert "Select a valid choice. boss is not one of the available choices." in html
    assert mailoutbox == []


def test_it_withdraws_an_invitation(client, org, alice, mailoutbox):
    client.force_login(alice)
    client.post(
        reverse("dashboard:team", args=[org.slug]), {"email": "dana@example.com", "role": "viewer"}
    )
    invitation = Invitation.objects.get()

    response = client.post(
        reverse("dashboard:team_invitation_revoke", args=[org.slug, invitation.pk]), follow=True
    )

    assert "Invitation to dana@example.com withdrawn." in response.content.decode()
    assert "No invitation is waiting for an answer." in response.content.decode()
    token = LINK.search(mailoutbox[0].body).group(1)
    client.logout()
    page = client.get(reverse("invite", args=[token]))
    assert page.status_code == 410
    assert "This invitation was withdrawn." in page.content.decode()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANALYST])
def test_it_forbids_members_below_admin(client, org, alice, ann, role):
    someone = member(org, role, "sam")
    client.force_login(someone.user)

    assert client.get(team_url(org)).status_code == 403
    response = client.post(member_url(org, ann), {"action": "role", "role": "admin"})
    assert response.status_code == 403
    assert (
        client.post(
            reverse("dashboard:team", args=[org.slug]), {"email": "x@example.com", "role": "viewer"}
        ).status_code
        == 403
    )
    ann.refresh_from_db()
    assert ann.role == Role.ANALYST
    assert 'href="/o/acme/team/"' not in client.get(f"/o/{org.slug}/alerts/").content.decode()


def test_it_answers_404_to_an_outsider(client, org, alice, charlie, ann):
    client.force_login(charlie)

    assert client.get(team_url(org)).status_code == 404
    assert client.post(member_url(org, ann), {"action": "remove"}).status_code == 404
    assert Membership.objects.filter(pk=ann.pk).exists()


def test_it_answers_404_for_another_orgs_member(client, org, other_org, alice, charlie):
    client.force_login(alice)
    theirs = Membership.objects.get(user=charlie)
    response = client.post(member_url(org, theirs), {"action": "remove"})
    assert response.status_code == 404
    assert Membership.objects.filter(pk=theirs.pk).exists()


# --- the invitation link ------------------------------------------------------------------------


def invite(client, org, inviter, email="dana@example.com", role="analyst", mailoutbox=None):
    client.force_login(inviter)
    client.post(reverse("dashboard:team", args=[org.slug]), {"email": email, "role": role})
    client.logout()
    return LINK.search(mailoutbox[-1].body).group(1)


def test_it_lets_the_invitee_set_a_password_and_land_in_the_org(client, org, alice, mailoutbox):
    token = invite(client, org, alice, mailoutbox=mailoutbox)

    page = client.get(f"/invite/{token}/")
    assert page.status_code == 200
    assert "alice invited dana@example.com to Acme as analyst." in page.content.decode()
    response = client.post(
        f"/invite/{token}/",
        {"username": "dana", "password": "a-long-secret-97", "password_again": "a-long-secret-97"},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == "/o/acme/"
    assert "Welcome to Acme. You joined as analyst." in response.content.decode()
    assert Membership.objects.get(user__username="dana").role == Role.ANALYST
    again = client.get(f"/invite/{token}/")
    assert again.status_code == 410
    assert "already been used" in again.content.decode()


def test_it_shows_the_form_errors_of_a_new_account(client, org, alice, bob, mailoutbox):
    token = invite(client, org, alice, mailoutbox=mailoutbox)

    response = client.post(
        f"/invite/{token}/",
        {
            "username": "bob",
            "password": "a-long-secret-97",
            "password_again": "different-secret-97",
        },
    )
    assert response.status_code == 400
    assert "The two passwords differ." in response.content.decode()
    response = client.post(
        f"/invite/{token}/", {"username": "bob", "password": "123", "password_again": "123"}
    )
    html = response.content.decode()
    assert "That username is taken; choose another." in html
    assert "This password is too short." in html
    assert not Membership.objects.filter(user__username="bob", role="analyst").exists()


def test_it_asks_an_existing_account_to_sign_in_first(client, org, alice, mailoutbox):
    dana = f.UserFactory(username="dana", email="dana@example.com")
    token = invite(client, org, alice, mailoutbox=mailoutbox)

    page = client.get(f"/invite/{token}/")
    assert "dana@example.com already has an account. Sign in with it to accept." in (
        page.content.decode()
    )
    assert f'href="/accounts/login/?next=/invite/{token}/"' in page.content.decode()
    client.force_login(dana)
    response = client.post(f"/invite/{token}/", follow=True)
    assert response.redirect_chain[-1][0] == "/o/acme/"
    assert Membership.objects.get(user=dana, organization=org).role == Role.ANALYST


def test_it_refuses_the_link_to_another_signed_in_account(client, org, alice, charlie, mailoutbox):
    token = invite(client, org, alice, role="admin", mailoutbox=mailoutbox)
    client.force_login(charlie)

    assert client.get(f"/invite/{token}/").status_code == 403
    response = client.post(f"/invite/{token}/")
    assert response.status_code == 403
    assert "This invitation is for dana@example.com; you are signed in as charlie." in (
        response.content.decode()
    )
    assert not Membership.objects.filter(user=charlie, organization=org).exists()


def test_it_shows_a_clear_page_for_an_expired_or_unknown_link(client, org, alice, mailoutbox):
    token = invite(client, org, alice, mailoutbox=mailoutbox)
    Invitation.objects.update(expires_at="2020-01-01T00:00:00Z")

    expired = client.get(f"/invite/{token}/")
    assert expired.status_code == 410
    assert "This invitation has expired (links work for 7 days)." in expired.content.decode()
    posted = client.post(
        f"/invite/{token}/",
        {"username": "dana", "password": "a-long-97-x", "password_again": "a-long-97-x"},
    )
    assert posted.status_code == 410
    unknown = client.get("/invite/not-a-real-token/")
    assert unknown.status_code == 404
    assert "This invitation link is not valid." in unknown.content.decode()
    assert not Membership.objects.filter(user__username="dana").exists()


def test_it_lets_an_admin_leave_the_org(client, org, alice, erin):
    client.force_login(erin.user)

    response = client.post(member_url(org, erin), {"action": "remove"})

    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert not Membership.objects.filter(pk=erin.pk).exists()
    assert client.get(team_url(org)).status_code == 404
