"""Django admin: staff see everything; org admins manage their own org, with field errors."""

import re

import pytest
from django.urls import reverse

from analytics.models import (
    Activity,
    AlertRule,
    ApiKey,
    AuditEvent,
    Bot,
    Conversation,
    CustomerErasure,
    Membership,
    Message,
    Role,
)
from analytics.services.api_keys import api_key_authenticate
from tests.factories import (
    ActivityFactory,
    BotFactory,
    ConversationFactory,
    MembershipFactory,
    MessageFactory,
    UserFactory,
)


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


# --- roles in admin: no one grants above their own role; an org keeps an owner --------------


def _membership_change(client, membership, role):
    return client.post(
        reverse("admin:analytics_membership_change", args=[membership.pk]),
        {"role": role, "created_at_0": "2026-11-01", "created_at_1": "10:00:00"},
    )


def test_an_org_admin_cannot_promote_itself_to_owner(client, alice, erin, org):
    mine = Membership.objects.get(user=erin, organization=org)
    client.force_login(erin)
    form = client.get(reverse("admin:analytics_membership_change", args=[mine.pk]))
    assert 'value="owner"' not in form.content.decode()
    response = _membership_change(client, mine, "owner")
    assert response.status_code == 200
    assert "Select a valid choice" in " ".join(response.context["adminform"].form.errors["role"])
    mine.refresh_from_db()
    assert mine.role == Role.ADMIN


def test_the_server_refuses_a_role_above_the_actors_even_if_offered(client, alice, erin, org):
    from analytics.admin import MembershipForm

    bob = MembershipFactory(organization=org, user=UserFactory(username="bob"), role="viewer")
    form = MembershipForm(
        data={"role": "owner", "created_at_0": "2026-11-01", "created_at_1": "10:00:00"},
        instance=bob,
    )
    form.actor = erin
    form.fields.pop("organization"), form.fields.pop("user")
    assert not form.is_valid()
    assert form.errors["role"] == ["Your role (admin) cannot give the owner role."]


def test_an_org_admin_cannot_edit_or_delete_the_owner(client, alice, erin, org):
    owner = Membership.objects.get(user=alice, organization=org)
    client.force_login(erin)
    change_url = reverse("admin:analytics_membership_change", args=[owner.pk])
    page = client.get(change_url).content.decode()
    assert 'name="role"' not in page  # shown read-only
    _membership_change(client, owner, "viewer")
    delete = client.post(
        reverse("admin:analytics_membership_delete", args=[owner.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    bulk = client.post(
        reverse("admin:analytics_membership_changelist"),
        {"action": "delete_selected", "_selected_action": [owner.pk], "post": "yes"},
    )
    assert bulk.status_code == 403
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_an_org_admin_manages_members_below_owner(client, alice, erin, org):
    bob = MembershipFactory(organization=org, user=UserFactory(username="bob"), role="viewer")
    client.force_login(erin)
    response = _membership_change(client, bob, "analyst")
    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.role == Role.ANALYST
    client.post(
        reverse("admin:analytics_membership_changelist"),
        {"action": "delete_selected", "_selected_action": [bob.pk], "post": "yes"},
    )
    assert not Membership.objects.filter(pk=bob.pk).exists()


def test_the_last_owner_is_never_demoted_or_removed(client, alice, org, staff):
    owner = Membership.objects.get(user=alice, organization=org)
    for user in (alice, staff):
        client.force_login(user)
        response = _membership_change(client, owner, "admin")
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors["role"]
        assert errors == [
            (
                "Cannot demote alice: they are the last owner of Acme. Make another member an "
                "owner first."
            )
        ]
        delete = client.post(
            reverse("admin:analytics_membership_delete", args=[owner.pk]), {"post": "yes"}
        )
        assert delete.status_code == 403
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_an_org_admin_cannot_change_the_orgs_settings(client, alice, erin, org):
    client.force_login(erin)
    client.post(
        reverse("admin:analytics_organization_change", args=[org.pk]),
        {"name": "Hijacked", "timezone": "UTC"},
    )
    org.refresh_from_db()
    assert org.name == "Acme"


def _rule_form(org, **changes):
    data = {
        "organization": org.pk,
        "name": "Slow replies",
        "metric": "p95_response_ms",
        "comparison": "above",
        "warning_threshold": "2000",
        "critical_threshold": "5000",
        "window_minutes": "15",
        "cooldown_minutes": "30",
        "hysteresis_percent": "10",
        "email_recipients": "",
        "webhook_url": "",
        "webhook_secret": "",
        "enabled": "on",
        "created_at_0": "2026-11-01",
        "created_at_1": "10:00:00",
    }
    data.update(changes)
    return data


def test_an_org_admin_creates_and_changes_a_rule_like_the_page_and_the_api(
    client, alice, org, settings
):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    client.force_login(alice)
    add = reverse("admin:analytics_alertrule_add")
    for bad, field in [
        ({"warning_threshold": "6000"}, "warning_threshold"),
        ({"webhook_url": "http://10.0.0.5/hook"}, "webhook_url"),
    ]:
        response = client.post(add, _rule_form(org, **bad))
        assert response.status_code == 200 and field in response.context["adminform"].form.errors
    assert not AlertRule.objects.exists()
    response = client.post(add, _rule_form(org, webhook_url="https://93.184.215.14/hook"))
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = AlertRule.objects.for_org(org).get()
    assert rule.created_by == alice and rule.webhook_secret  # a signing secret was made
    change = reverse("admin:analytics_alertrule_change", args=[rule.pk])
    # as a browser sends it: created_at has a callable default, so its initial value travels too
    initial = {"initial-created_at_0": "2026-11-01", "initial-created_at_1": "10:00:00"}
    form = _rule_form(
        org,
        webhook_url=rule.webhook_url,
        webhook_secret=rule.webhook_secret,
        warning_threshold="2500",
        **initial,
    )
    assert client.post(change, form).status_code == 302
    entries = AuditEvent.objects.for_org(org).order_by("pk")
    assert [(e.action, e.actor_label, e.target) for e in entries] == [
        ("alert_rule.created", "alice", "Slow replies"),
        ("alert_rule.changed", "alice", "Slow replies"),
    ]
    assert entries[1].details["changed"] == ["warning_threshold"]


# --- customer erasure from admin (issue 14) ----------------------------------------------------


def test_an_org_admin_erases_a_customer_from_the_conversation_list(client, alice, org, other_org):
    bot = BotFactory(organization=org)
    selected = ConversationFactory(bot=bot, customer="+27 82 555 0101")
    unselected = ConversationFactory(bot=bot, customer="+27 82 555 0101")  # same customer
    other_customer = ConversationFactory(bot=bot, customer="Ben Brown")
    elsewhere = ConversationFactory(
        bot=BotFactory(organization=other_org), customer="+27 82 555 0101"
    )
    for conversation in (selected, unselected, other_customer, elsewhere):
        MessageFactory.create_batch(3, conversation=conversation)
    ActivityFactory(bot=BotFactory(organization=org, slug="ai"), customer="+27 82 555 0101")

    client.force_login(alice)
    response = client.post(
        reverse("admin:analytics_conversation_changelist"),
        # another org's conversation posted by hand is outside alice's rows: ignored
        {"action": "erase_customers", "_selected_action": [selected.pk, elsewhere.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "Erased 1 customer(s): 2 conversations, 6 messages, 1 activities." in page

    left = set(Conversation.objects.for_org(org).values_list("customer", flat=True))
    assert left == {"Ben Brown"}  # every conversation of the customer, not only the selected one
    assert Message.objects.for_org(org).count() == 3
    assert not Activity.objects.for_org(org).exists()
    assert Conversation.objects.for_org(other_org).get().pk == elsewhere.pk
    assert Message.objects.for_org(other_org).count() == 3

    erasure = CustomerErasure.objects.for_org(org).get()
    assert erasure.actor_label == "alice"
    assert erasure.counts["messages"] == 6
    trail = client.get(reverse("admin:analytics_customererasure_changelist")).content.decode()
    assert "alice" in trail
    assert "+27 82 555 0101" not in trail  # the audit trail never holds the identifier


def test_an_analyst_has_no_erase_action(client, org):
    analyst = UserFactory(username="carol", is_staff=True)
    MembershipFactory(organization=org, user=analyst, role=Role.ANALYST)
    conversation = ConversationFactory(bot=BotFactory(organization=org))
    client.force_login(analyst)
    client.post(
        reverse("admin:analytics_conversation_changelist"),
        {"action": "erase_customers", "_selected_action": [conversation.pk]},
    )
    assert Conversation.objects.filter(pk=conversation.pk).exists()
