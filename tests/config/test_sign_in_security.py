"""Sign-in is throttled (5 failures lock the username and the client address for 15 minutes, on
the site's and the admin's sign-in), password reset works by email, and logout is POST only."""

import re

import pytest
from django.core.management import call_command
from django.urls import reverse

from tests.factories import UserFactory

PASSWORD = "pw-botflow-123"


def sign_in(client, username, password, *, ip="203.0.113.7", url=None):
    return client.post(
        url or reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=ip,
    )


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_it_locks_a_username_out_after_five_wrong_passwords(client, alice, url):
    alice.is_staff = True
    alice.save()
    statuses = [sign_in(client, "alice", "wrong", url=url).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]  # the form with its error, then the lockout

    response = sign_in(client, "alice", PASSWORD, url=url)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many sign-in attempts" in page
    assert re.search(r"Try again in 1[45] minutes, after \d\d:\d\d UTC", page)
    assert 840 <= int(response.headers["Retry-After"]) <= 900
    assert "_auth_user_id" not in client.session


def test_it_locks_the_username_from_any_address_and_the_address_for_any_username(client, alice):
    UserFactory(username="erin")
    for i in range(5):
        sign_in(client, "alice", "wrong", ip=f"198.51.100.{i}")  # one guess per address

    assert sign_in(client, "alice", PASSWORD, ip="192.0.2.50").status_code == 429
    for name in ("nobody-1", "nobody-2", "nobody-3", "nobody-4", "nobody-5"):
        sign_in(client, name, "wrong", ip="192.0.2.99")  # one address, many usernames
    assert sign_in(client, "erin", PASSWORD, ip="192.0.2.99").status_code == 429


def test_it_does_not_forget_the_guesses_when_the_guesser_signs_in_to_its_own_account(client, alice):
    UserFactory(username="mallory")
    for _ in range(4):
        sign_in(client, "alice", "wrong", ip="203.0.113.66")
    assert sign_in(client, "mallory", PASSWORD, ip="203.0.113.66").status_code == 302
    client.logout()

    sign_in(client, "alice", "wrong", ip="203.0.113.66")

    assert sign_in(client, "alice", PASSWORD, ip="192.0.2.1").status_code == 429


def test_it_leaves_another_user_from_another_address_unaffected(client, alice):
    UserFactory(username="erin")
    for _ in range(5):
        sign_in(client, "alice", "wrong", ip="203.0.113.7")

    response = sign_in(client, "erin", PASSWORD, ip="192.0.2.10")

    assert response.status_code == 302
    assert client.session["_auth_user_id"]


def test_it_lets_the_user_in_again_once_an_admin_unlocks(client, alice):
    for _ in range(5):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", PASSWORD).status_code == 429

    call_command("axes_reset_username", "alice")
    call_command("axes_reset_ip", "203.0.113.7")

    response = sign_in(client, "alice", PASSWORD)
    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == alice.pk


def test_it_shows_locked_out_sign_ins_to_platform_staff_in_admin_to_unlock(client, alice):
    for _ in range(5):
        sign_in(client, "alice", "wrong")
    staff = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(staff)

    page = client.get("/admin/axes/accessattempt/").content.decode()

    assert "alice" in page
    assert "203.0.113.7" in page


def test_it_counts_a_forged_x_forwarded_for_as_the_real_client(client, alice):
    for i in range(5):
        client.post(
            reverse("login"),
            {"username": f"guess-{i}", "password": "wrong"},
            REMOTE_ADDR="203.0.113.7",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{i}",
        )

    assert sign_in(client, "alice", PASSWORD, ip="203.0.113.7").status_code == 429


def test_it_resets_a_forgotten_password_by_email(client, alice, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["alice@example.com"]
    assert mail.subject == "Reset your BotFlow Analytics password"
    link = re.search(r"https?://testserver(/accounts/reset/\S+/)", mail.body).group(1)

    form = client.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-new-passphrase-42", "new_password2": "a-new-passphrase-42"},
        follow=True,
    )
    assert "Your password is changed" in done.content.decode()

    assert sign_in(client, "alice", PASSWORD).status_code == 200  # the old one is refused
    assert sign_in(client, "alice", "a-new-passphrase-42").status_code == 302
    again = client.get(link, follow=True)
    assert "This link no longer works" in again.content.decode()


def test_it_reveals_nothing_about_an_unknown_email(client, alice, mailoutbox):
    known = client.post(reverse("password_reset"), {"email": "alice@example.com"}, follow=True)
    unknown = client.post(reverse("password_reset"), {"email": "who@example.com"}, follow=True)

    assert len(mailoutbox) == 1
    assert unknown.redirect_chain == known.redirect_chain
    assert unknown.content == known.content


def test_it_links_the_reset_page_from_sign_in(client, db):
    page = client.get(reverse("login")).content.decode()

    assert f'href="{reverse("password_reset")}"' in page


def test_it_signs_out_only_by_post(client, alice, org):
    client.force_login(alice)

    assert client.get(reverse("logout")).status_code == 405
    assert client.get(reverse("dashboard:org_dashboard", args=[org.slug])).status_code == 200
    page = client.get(reverse("dashboard:org_dashboard", args=[org.slug])).content.decode()
    assert f'<form method="post" action="{reverse("logout")}">' in page

    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("dashboard:org_dashboard", args=[org.slug])).status_code == 302
