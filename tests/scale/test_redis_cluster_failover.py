"""Masters of the Redis Cluster (3 masters, 3 replicas) are killed: while events are ingested
(no batch fails, every accepted event is stored, and once the replica has taken over the live
state is rebuilt, as pulse does it, to agree with PostgreSQL), and under open dashboards (they
get frames and revocations again through the promoted replicas)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.db import connection
from django.test import Client

from analytics.live_keys import org_key
from analytics.models import Membership, Message, Organization, Role
from analytics.redis import cluster_channel_layer, get_redis, reset_clients
from analytics.selectors import live_snapshot
from analytics.services.ingest import events_ingest
from analytics.services.live import live_recover
from config.env import parse_redis_url
from dashboard.broadcast import org_group, publish
from dashboard.hub import channel_prefix, get_hub
from dashboard.revocation import CLOSE_AUTH_ENDED
from tests.dashboard.test_consumers import connect, run
from tests.factories import BotFactory, OrganizationFactory, UserFactory
from tests.scale.cluster import RedisClusterNodes


@pytest.fixture
def cluster_with_replicas(settings):
    nodes = RedisClusterNodes(masters=3, replicas=1)
    try:
        nodes.start(timeout=40)
        settings.REDIS_URL = nodes.url
        reset_clients()
        yield nodes
    finally:
        reset_clients()
        channel_layers.backends.clear()
        nodes.stop()


def batch(n: int, now: datetime) -> list[dict]:
    return [
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": "sales",
            "conversation": f"c{i % 5}",
            "direction": "inbound" if i % 2 else "outbound",
            "timestamp": (now - timedelta(seconds=i % 50)).isoformat(),
            **({} if i % 2 else {"response_time_ms": 300, "outcome": "success"}),
        }
        for i in range(n)
    ]


class Ingestor(threading.Thread):
    """Ingests a batch of 20 messages every 20 ms until stopped; a batch that raised is a
    failure of the product (the API would answer 500)."""

    def __init__(self, org: Organization) -> None:
        super().__init__(daemon=True)
        self.org = org
        self.stopping = threading.Event()
        self.accepted = 0
        self.delayed = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    result = events_ingest(org=self.org, events=batch(20, datetime.now(UTC)))
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(exc)
                else:
                    self.accepted += result.accepted
                    self.delayed += result.live == "delayed"
                time.sleep(0.02)
        finally:
            connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_master_failing_over_during_ingestion_loses_no_event_and_the_live_state_is_rebuilt(
    cluster_with_replicas,
):
    cluster = cluster_with_replicas
    org = OrganizationFactory(slug="failover", name="Failover")
    BotFactory(organization=org, slug="sales", name="Sales")
    live_recover()  # pulse's first look: the masters as they are now
    org.refresh_from_db()
    assert org.live_stale_since is None
    victim = cluster.master_of(org_key(org.pk, "m", 0))

    ingestor = Ingestor(org)
    ingestor.start()
    try:
        time.sleep(1.0)
        assert ingestor.accepted > 0 and not ingestor.errors
        cluster.kill(victim)
        taken_over = cluster.wait_failover(victim)
        time.sleep(1.0)  # more batches on the new master
    finally:
        ingestor.stopping.set()
        ingestor.join(30)
    assert not ingestor.errors, ingestor.errors[:3]

    stored = Message.objects.filter(organization=org).count()
    assert stored == ingestor.accepted  # accepted == stored, outage or not

    # pulse's next ticks notice the new master and rebuild the org from PostgreSQL.
    deadline = time.monotonic() + 20
    rebuilt = 0
    while time.monotonic() < deadline:
        try:
            rebuilt += live_recover()
        except Exception:  # noqa: BLE001 - pulse retries a tick that met the cluster mid-change
            time.sleep(0.2)
            continue
        org.refresh_from_db()
        if rebuilt and org.live_stale_since is None:
            break
        time.sleep(0.2)
    assert rebuilt >= 1 and org.live_stale_since is None
    assert live_snapshot(org=org).messages_last_hour.value == stored
    assert get_redis().ping()
    print(f"failover took {taken_over:.1f} s; {ingestor.delayed} batches delayed live")


@pytest.mark.django_db(transaction=True)
def test_dashboards_get_frames_and_revocations_again_after_their_nodes_fail_over(
    cluster_with_replicas, settings
):
    """The node the hub subscribes on and the node the channel layer uses are both killed: the
    sockets resync (4013, as after any Redis loss), connect again, and get frames and
    revocations through the promoted replicas."""
    cluster = cluster_with_replicas
    # The node the hub subscribes on (its pattern's slot) named first: the channel layer uses
    # it too, so one failover takes both away.
    victim = cluster.master_of(channel_prefix() + "*")
    nodes = [victim, *(p for p in cluster.ports if p != victim)]
    target = parse_redis_url(
        "REDIS_URL", "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in nodes) + "/"
    )
    settings.REDIS_URL = target.url
    reset_clients()
    settings.CHANNEL_LAYERS = {"default": cluster_channel_layer(target.url, target.node_url())}
    channel_layers.backends.clear()
    org = OrganizationFactory(slug="acme", name="Acme")
    user = UserFactory(username="carol")
    Membership.objects.create(organization=org, user=user, role=Role.OWNER)
    browser = Client()
    browser.force_login(user)
    headers = [
        (b"host", b"testserver"),
        (b"origin", b"http://testserver"),
        (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode()),
    ]
    group = org_group(org.pk)

    async def frame_arrives(page, text: str, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await sync_to_async(publish)(group, f"<p id='x'>{text}</p>")
            try:
                if await page.receive_from(timeout=0.5) == f"<p id='x'>{text}</p>":
                    return
            except TimeoutError:
                continue
        raise AssertionError(f"no frame {text!r} within {within} s")

    async def scenario():
        page, connected, _ = await connect("/ws/o/acme/live/", headers)
        assert connected
        await asyncio.wait_for(get_hub().ready.wait(), 5)
        await frame_arrives(page, "before")

        await sync_to_async(cluster.kill)(victim)
        await sync_to_async(cluster.wait_failover)(victim)

        # The hub lost its subscription (if its node died): the page is told to come back.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            again, connected, _ = await connect("/ws/o/acme/live/", headers)
            if connected:
                break
            await asyncio.sleep(0.5)
        assert connected, "no dashboard socket accepted within 20 s of the failover"
        await asyncio.wait_for(get_hub().ready.wait(), 10)
        await frame_arrives(again, "after")

        # A revocation still reaches the socket (the layer moved to a live node).
        await sync_to_async(browser.post)("/accounts/logout/")
        while True:
            output = await again.receive_output(timeout=10)
            if output["type"] == "websocket.close":
                break
        assert output["code"] == CLOSE_AUTH_ENDED

    run(scenario)
