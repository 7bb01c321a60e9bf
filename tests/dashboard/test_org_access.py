"""Walks the URLconf and the admin registry: every org route and tenant admin page is closed to
outsiders. A view added later is covered without anyone remembering to write a test for it."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib import admin
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, path, reverse

from analytics.models import Organization, Role, TenantModel
from tests import factories as f

ORG_PREFIX = "o/<slug:org_slug>/"


def org_routes() -> list[tuple[str, URLPattern]]:
    """Every route under /o/<org_slug>/ as (route, pattern)."""
    found = []

    def walk(patterns, prefix):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif route.startswith(ORG_PREFIX):
                found.append((route, p))

    walk(get_resolver().url_patterns, "")
    return found


def fill(route: str, values: dict[str, str]) -> str:
    """Turn 'o/<slug:org_slug>/bots/<slug:slug>/' into a URL using the given values."""

    def sub(match):
        converter, name = (match.group(1) or "str"), match.group(2)
        if name in values:
            return str(values[name])
        return {"int": "1", "uuid": str(uuid.uuid4())}.get(converter, "x")

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", sub, route)


def outsider_failures(client: Client, target_values: dict[str, str]) -> list[str]:
    """Org routes that answer an outsider with anything but 404."""
    failures = []
    for route, _pattern in org_routes():
        url = fill(route, target_values)
        response = client.get(url)
        if response.status_code != 404:
            failures.append(f"{url} -> {response.status_code}")
    return failures


@pytest.fixture
def target(org, bot):
    """Real objects of `org`, so a view that forgot scoping would find them and answer 200."""
    campaign = f.CampaignFactory(organization=org, slug="winter", bot=bot)
    conversation = f.ConversationFactory(bot=bot)
    return {
        "org_slug": org.slug,
        "slug": bot.slug,
        "bot_slug": bot.slug,
        "campaign_slug": campaign.slug,
        "pk": conversation.pk,
        "conversation_id": conversation.pk,
        "id": conversation.pk,
    }


def test_it_finds_the_org_routes():
    routes = [route for route, _ in org_routes()]
    assert f"{ORG_PREFIX}" in routes  # the live dashboard, at least


def test_it_answers_404_to_an_outsider_on_every_org_route(client, charlie, target):
    client.force_login(charlie)
    assert outsider_failures(client, target) == []


def test_it_sends_anonymous_users_to_sign_in_on_every_org_route(client, target):
    for route, _ in org_routes():
        url = fill(route, target)
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_it_lets_members_in_on_every_org_route(client, alice, target):
    # An owner holds every permission; what each lower role gets is tests/test_role_matrix.py's.
    client.force_login(alice)
    for route, _ in org_routes():
        if "<" in route[len(ORG_PREFIX) :]:
            continue  # object routes may 404 on dummy ids; the outsider check is what matters
        response = client.get(fill(route, target))
        assert response.status_code == 200, route


# --- the walk itself catches an unscoped view -------------------------------------------------


def _unscoped_view(request, org_slug):
    org = Organization.objects.get(slug=org_slug)  # forgot get_org_for_user
    return HttpResponse(org.name)


urlpatterns = [path("o/<slug:org_slug>/leaky/", _unscoped_view)]


@pytest.mark.urls(__name__)
def test_it_flags_a_view_that_forgets_scoping(client, charlie, target):
    client.force_login(charlie)
    failures = outsider_failures(client, target)
    assert failures == ["/o/acme/leaky/ -> 200"]


# --- admin -----------------------------------------------------------------------------------


def tenant_admin_models():
    return [model for model in admin.site._registry if issubclass(model, TenantModel)]


@pytest.fixture
def other_rows(other_org):
    """One row of every tenant model in the other org."""
    bot = f.BotFactory(organization=other_org)
    conversation = f.ConversationFactory(bot=bot)
    rows = [
        bot,
        f.CampaignFactory(organization=other_org),
        conversation,
        f.MessageFactory(conversation=conversation),
        f.ActivityFactory(bot=bot),
        f.GaugeFactory(bot=bot),
        f.EventReceiptFactory(organization=other_org),
        f.CustomerErasureFactory(organization=other_org),
        f.ApiKeyFactory(organization=other_org),
        f.MembershipFactory(organization=other_org, role=Role.VIEWER),
        f.ConversationMetricsFactory(conversation=conversation),
        f.BotHourlyRollupFactory(bot=bot),
        f.BotDailyMetricsFactory(bot=bot),
        f.OrgHourlyUsageFactory(organization=other_org),
        f.AlertRuleFactory(organization=other_org),
        f.AlertEventFactory(rule__organization=other_org),
        f.AlertNotificationFactory(event__rule__organization=other_org),
    ]
    by_model = {type(row): row for row in rows}
    missing = [m.__name__ for m in tenant_admin_models() if m not in by_model]
    assert not missing, f"add a row of {missing} to this fixture"
    return by_model


def alice_org_id(user) -> int:
    return user.memberships.get().organization_id


def _admin_url(model, action, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{action}", args=args)


def test_it_hides_other_orgs_rows_from_an_org_admin_in_admin(client, alice, other_rows, other_org):
    client.force_login(alice)
    for model, row in other_rows.items():
        for action in ("change", "delete", "history"):
            response = client.get(_admin_url(model, action, row.pk))
            assert response.status_code == 404, f"{model.__name__} {action}"
        changelist = client.get(_admin_url(model, "changelist"))
        assert changelist.status_code == 200, model.__name__
        listed = changelist.context["cl"].result_list
        assert row.pk not in {obj.pk for obj in listed}, model.__name__
        assert {obj.organization_id for obj in listed} <= {alice_org_id(alice)}, model.__name__
    response = client.get(_admin_url(Organization, "change", other_org.pk))
    assert response.status_code == 404
