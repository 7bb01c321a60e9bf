"""Fixtures of the fault suite: a private PostgreSQL (migrated once per run), a private Redis per
test, and the product's processes (daphne, pulse) on them, with one org to watch."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
import pytest

from tests.e2e.conftest import browser_type_launch_args  # noqa: F401 - the same Chromium
from tests.e2e.live_servers import Servers
from tests.faults.servers import PrivatePostgres, PrivateRedis, manage

SEED = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
from analytics.models import Bot, Membership, Organization
from analytics.services.api_keys import api_key_create
org = Organization.objects.create(slug={slug!r}, name="Faults")
Bot.objects.create(organization=org, slug="support-bot", name="Support", channel="web")
user = get_user_model().objects.create_user({slug!r}, password="pw-faults-123")
Membership.objects.create(organization=org, user=user, role="viewer")
client = Client()
client.force_login(user)
key = api_key_create(organization=org, name="faults", scopes="ingest,read").secret
print(json.dumps({{"org_id": org.pk, "session": client.cookies["sessionid"].value, "key": key}}))
"""


@pytest.fixture(scope="session")
def private_pg():
    why = PrivatePostgres.available()
    if why:
        # Not a skip: a fault suite that silently does not run proves nothing.
        pytest.fail(f"the fault suite needs a private PostgreSQL: {why}")
    server = PrivatePostgres()
    try:
        server.create()
        manage(server.url, "redis://127.0.0.1:1/0", "migrate", "--noinput", "-v", "0")
        yield server
    finally:
        server.destroy()


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


@dataclass
class Product:
    """The running product on private servers, and one org with a viewer and an API key."""

    pg: PrivatePostgres
    redis: PrivateRedis
    servers: Servers
    slug: str
    org_id: int
    session: str
    key: str

    def stored_messages(self) -> tuple[int, int]:
        """(rows, distinct event ids) of this org's messages in PostgreSQL."""
        return self.pg.query(
            "SELECT count(*), count(DISTINCT text) FROM analytics_message WHERE organization_id = %s",
            [self.org_id],
        )[0]

    def still_running(self) -> dict[str, int | None]:
        """Exit codes of the product's processes (None: still running)."""
        return {"web": self.servers.web.poll(), "pulse": self.servers.pulse.poll()}

    def log(self, name: str) -> str:
        return (self.servers.logs / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def product(private_pg, private_redis, tmp_path):
    private_pg.ensure_running()
    slug = f"faults-{uuid.uuid4().hex[:8]}"
    seeded = orjson.loads(
        manage(private_pg.url, private_redis.url, "shell", "-v", "0", "-c", SEED.format(slug=slug))
        .strip()
        .splitlines()[-1]
    )
    servers = Servers(database_url=private_pg.url, redis_url=private_redis.url, logs=tmp_path)
    servers.start()
    try:
        yield Product(pg=private_pg, redis=private_redis, servers=servers, slug=slug, **seeded)
    finally:
        servers.stop()
