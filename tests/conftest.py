"""Shared fixtures. Tests use the real PostgreSQL and Redis the launcher (or CI) points them at."""

import os
import uuid

import pytest
from django.conf import settings as django_settings

from analytics.models import Role
from tests.factories import BotFactory, MembershipFactory, OrganizationFactory, UserFactory

# Playwright's sync API runs an event loop in the test thread; the ORM calls made by the same
# tests are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True, scope="session")
def _live_key_prefix():
    """Each test run keeps its live state under its own Redis prefix and removes it afterwards."""
    from analytics.redis import get_redis

    prefix = f"bftest-{uuid.uuid4().hex[:8]}"
    django_settings.LIVE_KEY_PREFIX = prefix
    yield prefix
    client = get_redis()
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)


@pytest.fixture
def redis_client():
    from analytics.redis import get_redis

    return get_redis()


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    # The manifest storage needs `collectstatic`; tests serve static files from the finders.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def org(db):
    return OrganizationFactory(slug="acme", name="Acme")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(slug="globex", name="Globex")


@pytest.fixture
def alice(org):
    """Owner of `org`."""
    user = UserFactory(username="alice")
    MembershipFactory(organization=org, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def bob(org):
    """A viewer in `org`."""
    user = UserFactory(username="bob")
    MembershipFactory(organization=org, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def dave(org):
    """An analyst in `org`: explores, exports CSV, acknowledges alerts."""
    user = UserFactory(username="dave")
    MembershipFactory(organization=org, user=user, role=Role.ANALYST)
    return user


@pytest.fixture
def erin(org):
    """An admin in `org`: also alert rules, API keys and members below owner."""
    user = UserFactory(username="erin")
    MembershipFactory(organization=org, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def charlie(other_org):
    """Owner of `other_org`: an outsider to `org`."""
    user = UserFactory(username="charlie")
    MembershipFactory(organization=other_org, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def bot(org):
    return BotFactory(organization=org, slug="support-bot", name="Support Assistant")
