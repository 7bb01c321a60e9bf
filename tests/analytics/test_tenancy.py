import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404

from analytics.models import Bot
from analytics.tenancy import admin_org_ids, get_org_for_user, orgs_for_user
from tests.factories import BotFactory


def test_it_resolves_a_members_org(alice, org):
    assert get_org_for_user(alice, "acme") == org


@pytest.mark.parametrize("slug", ["acme", "does-not-exist"])
def test_it_answers_404_to_outsiders_and_for_missing_orgs_alike(charlie, org, slug):
    with pytest.raises(Http404) as excinfo:
        get_org_for_user(charlie, slug)
    assert str(excinfo.value) == "No such organization."


def test_it_answers_404_to_anonymous_users(org):
    with pytest.raises(Http404):
        get_org_for_user(AnonymousUser(), "acme")


def test_for_org_returns_only_that_orgs_rows(org, other_org):
    mine = BotFactory(organization=org)
    BotFactory(organization=other_org)
    assert list(Bot.objects.for_org(org)) == [mine]
    assert list(Bot.objects.for_org(org.pk)) == [mine]


def test_it_lists_orgs_and_admin_orgs(alice, bob, charlie, org, other_org):
    assert orgs_for_user(alice) == [org]
    assert admin_org_ids(alice) == {org.pk}
    assert admin_org_ids(bob) == set()  # a viewer manages nothing
    assert orgs_for_user(AnonymousUser()) == []
