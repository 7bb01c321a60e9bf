"""A master of the Redis Cluster (3 masters, 3 replicas) is killed while events are ingested: no
batch fails, every accepted event is stored, and once its replica has taken over the live state
is rebuilt (as pulse does it) to agree with PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from channels.layers import channel_layers
from django.db import connection

from analytics.live_keys import org_key
from analytics.models import Message, Organization
from analytics.redis import get_redis, reset_clients
from analytics.selectors import live_snapshot
from analytics.services.ingest import events_ingest
from analytics.services.live import live_recover
from tests.factories import BotFactory, OrganizationFactory
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
        killed = time.monotonic()
        while cluster.master_of(org_key(org.pk, "m", 0)) == victim:
            assert time.monotonic() - killed < 20, "no replica took over within 20 s"
            time.sleep(0.2)
        cluster.wait_ok(time.monotonic() + 20)
        taken_over = time.monotonic() - killed
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
