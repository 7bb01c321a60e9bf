"""Django admin: staff see everything; org admins manage their own org, with field errors."""

import re

import pytest
from django.urls import reverse

from analytics.models import ApiKey, Bot, Conversation
from analytics.services.api_keys import api_key_authenticate
from tests.factories import BotFactory, UserFactory


@pytest.fixture
def staff(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def test_an_org_admin_signs_into_admin_and_sees_only_their_bots(client, alice, org, other_org):
    BotFactory(organization=org, name="Acme Helper")
    BotFactory(organization=other_org, name="Globex Claims")
    response = client.post(
        reverse("admin:login"),
        {"username": "alice", "password": "pw-botflow-123", "next": "/admin/"},
    )
    assert response.status_code == 302
    page = client.get(reverse("admin:analytics_bot_changelist")).content.decode()
    assert "Acme Helper" in page
    assert "Globex Claims" not in page


def test_a_viewer_cannot_use_admin(client, bob):
    client.force_login(bob)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    response = client.post(
        reverse("admin:login"), {"username": "bob", "password": "pw-botflow-123"}
    )
    assert "cannot manage any organization" in response.content.decode()


def test_an_org_admin_adds_a_bot_to_their_org(client, alice, org):
    client.force_login(alice)
    response = client.post(
        reverse("admin:analytics_bot_add"),
        {
            "organization": org.pk,
            "slug": "faq",
            "name": "FAQ bot",
            "kind": "chatbot",
            "channel": "web",
            "is_active": "on",
            "created_at_0": "2026-11-01",
            "created_at_1": "10:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Bot.objects.for_org(org).filter(slug="faq", name="FAQ bot").exists()


def test_it_rejects_a_duplicate_slug_with_a_field_error(client, alice, org, bot):
    client.force_login(alice)
    response = client.post(
        reverse("admin:analytics_bot_add"),
        {
            "organization": org.pk,
            "slug": bot.slug,
            "name": "Copy",
            "kind": "chatbot",
            "channel": "web",
            "created_at_0": "2026-11-01",
            "created_at_1": "10:00:00",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["slug"] == ["Bot with this slug already exists in this organization."]
    assert Bot.objects.for_org(org).count() == 1


def test_an_org_admin_cannot_put_a_bot_into_another_org(client, alice, other_org):
    client.force_login(alice)
    response = client.post(
        reverse("admin:analytics_bot_add"),
        {
            "organization": other_org.pk,
            "slug": "x",
            "name": "X",
            "kind": "chatbot",
            "channel": "web",
            "created_at_0": "2026-11-01",
            "created_at_1": "10:00:00",
        },
    )
    assert "organization" in response.context["adminform"].form.errors
    assert not Bot.objects.filter(slug="x").exists()


def _conversation_form(org, bot):
    return {
        "organization": org.pk,
        "bot": bot.pk,
        "external_id": "c-1",
        "customer": "Ana",
        "channel": "web",
        "status": "active",
        "started_at_0": "2026-11-01",
        "started_at_1": "10:00:00",
        "last_activity_at_0": "2026-11-01",
        "last_activity_at_1": "10:00:00",
    }


def test_it_rejects_a_conversation_whose_bot_is_in_another_org(client, staff, org, other_org):
    client.force_login(staff)
    foreign_bot = BotFactory(organization=other_org)
    response = client.post(
        reverse("admin:analytics_conversation_add"), _conversation_form(org, foreign_bot)
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["bot"] == [
        "This bot belongs to another organization."
    ]
    assert not Conversation.objects.exists()


def test_an_org_admin_cannot_even_choose_another_orgs_bot(client, alice, org, other_org):
    client.force_login(alice)
    foreign_bot = BotFactory(organization=other_org)
    response = client.post(
        reverse("admin:analytics_conversation_add"), _conversation_form(org, foreign_bot)
    )
    assert "Select a valid choice" in response.context["adminform"].form.errors["bot"][0]


def test_it_shows_a_new_api_key_once_and_stores_only_its_hash(client, alice, org):
    client.force_login(alice)
    response = client.post(
        reverse("admin:analytics_apikey_add"),
        {"organization": org.pk, "name": "platform", "scopes": ["ingest"]},
        follow=True,
    )
    page = response.content.decode()
    match = re.search(r"(bf_[0-9a-f]{8}_[A-Za-z0-9_-]+)", page)
    assert match, page[:3000]
    secret = match.group(1)
    key = ApiKey.objects.get(name="platform")
    assert key.created_by == alice
    assert api_key_authenticate(secret, scope="ingest") == key
    # shown once: the key's own page and the list never show it again
    assert (
        secret
        not in client.get(reverse("admin:analytics_apikey_change", args=[key.pk])).content.decode()
    )
    assert secret not in client.get(reverse("admin:analytics_apikey_changelist")).content.decode()


def test_an_org_admin_revokes_a_key(client, alice, org):
    from analytics.services.api_keys import api_key_create

    created = api_key_create(organization=org, name="old", scopes="read")
    client.force_login(alice)
    client.post(
        reverse("admin:analytics_apikey_changelist"),
        {"action": "revoke", "_selected_action": [created.api_key.pk]},
    )
    assert api_key_authenticate(created.secret, scope="read") is None


def test_staff_see_every_org(client, staff, org, other_org):
    BotFactory(organization=org, name="Acme Helper")
    BotFactory(organization=other_org, name="Globex Claims")
    client.force_login(staff)
    page = client.get(reverse("admin:analytics_bot_changelist")).content.decode()
    assert "Acme Helper" in page and "Globex Claims" in page
