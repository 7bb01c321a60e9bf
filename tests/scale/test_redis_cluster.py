"""The live state on a real Redis Cluster (3 masters on free ports, started here): ingestion,
the live figures, a rebuild, pulse's frames reaching a dashboard socket through the hub, and a
revocation closing it; every key of an org in one slot."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.conf import settings
from django.test import Client

from analytics.live_keys import org_tag
from analytics.models import Conversation
from analytics.redis import cluster_channel_layer, get_redis, reset_clients
from analytics.selectors import live_feed, live_snapshot
from analytics.selectors.live import ai_employee_cards, live_minute_series
from analytics.services.customers import customer_erase
from analytics.services.ingest import events_ingest
from analytics.services.live import live_rebuild, live_recover
from analytics.services.ops import ops_liveness
from config.env import parse_redis_url
from dashboard import broadcast
from dashboard.broadcast import org_group, pulse_tick
from dashboard.hub import channel_prefix, get_hub
from dashboard.presence import group_members
from dashboard.revocation import CLOSE_AUTH_ENDED
from tests.dashboard.test_consumers import connect, run
from tests.e2e.live_servers import ROOT, database_url_of_tests
from tests.factories import BotFactory, OrganizationFactory
from tests.scale.cluster import RedisClusterNodes


@pytest.fixture(scope="module")
def cluster():
    with RedisClusterNodes(masters=3) as nodes:
        yield nodes


@pytest.fixture
def on_cluster(cluster, settings):
    """The product's settings pointed at the cluster, as REDIS_URL=redis+cluster://... gives."""
    target = parse_redis_url("REDIS_URL", cluster.url)
    settings.REDIS_URL = target.url
    settings.CHANNEL_LAYERS = {"default": cluster_channel_layer(target.url, target.node_url())}
    reset_clients()
    channel_layers.backends.clear()
    assert type(get_redis()).__name__ == "RedisCluster"
    yield cluster
    reset_clients()
    channel_layers.backends.clear()


def message(bot, conv, direction, at, **fields):
    return {
        "id": str(uuid.uuid4()),
        "type": "message",
        "bot": bot,
        "conversation": conv,
        "direction": direction,
        "timestamp": at.isoformat(),
        **fields,
    }


def traffic(now, bots, n):
    """n inbound messages and n replies (100 ms .. 100*n ms) over the last 10 minutes."""
    events = []
    for i in range(n):
        bot = bots[i % len(bots)]
        at = now - timedelta(minutes=i % 10, seconds=30)
        events.append(message(bot, f"c{i % 4}", "inbound", at, customer=f"Customer {i % 4}"))
        events.append(
            message(
                bot,
                f"c{i % 4}",
                "outbound",
                at + timedelta(seconds=1),
                response_time_ms=100 * (i + 1),
                outcome="success" if i % 5 else "failed",
                tokens=10,
            )
        )
    events.append(
        {
            "id": str(uuid.uuid4()),
            "type": "activity",
            "bot": bots[-1],
            "kind": "booking",
            "description": "Booked a table",
            "customer": "Customer 0",
            "value": 12.5,
            "timestamp": (now - timedelta(minutes=1)).isoformat(),
        }
    )
    return events


def org_with_bots(slug):
    org = OrganizationFactory(slug=slug, name=slug.title())
    BotFactory(organization=org, slug="sales", name="Sales")
    BotFactory(organization=org, slug="helper", name="Helper", kind="ai_employee")
    return org


def keys_by_slot(org):
    """Every key of the org on the whole cluster, grouped by the slot each one is in."""
    client = get_redis()
    slots = defaultdict(list)
    for key in client.scan_iter(match=f"*{org_tag(org.pk)}*", count=1000):
        slots[client.cluster_keyslot(key)].append(key)
    return slots


@pytest.mark.django_db
def test_ingestion_on_the_cluster_gives_the_live_figures_and_keeps_each_org_in_one_slot(
    on_cluster,
):
    now = datetime.now(UTC)
    orgs = [org_with_bots(f"cluster-{i}") for i in range(6)]
    while len({on_cluster.master_of(org_tag(o.pk)) for o in orgs}) < 2:  # (1/3)^5 of runs
        assert len(orgs) < 30
        orgs.append(org_with_bots(f"cluster-{len(orgs)}"))
    for i, org in enumerate(orgs):
        result = events_ingest(org=org, events=traffic(now, ["sales", "helper"], 10 + i), now=now)
        assert result.accepted == 2 * (10 + i) + 1 and not result.rejected
        assert result.live == "ok"

    masters = set()
    for i, org in enumerate(orgs):
        n = 10 + i
        snapshot = live_snapshot(org=org, now=now)
        assert snapshot.messages_last_hour.value == 2 * n
        assert snapshot.tokens_last_hour.value == 10 * n
        assert snapshot.success_rate.value == pytest.approx(100.0 * (n - (n + 4) // 5) / n)
        assert snapshot.active_now == 4
        assert snapshot.avg_response_ms.value == pytest.approx(100 * (n + 1) / 2)
        assert sum(p.messages for p in live_minute_series(org=org, now=now)) == 2 * n
        assert len(live_feed(org=org, limit=50)) == 2 * n
        (card,) = ai_employee_cards(org=org, now=now)
        assert (card.bot.slug, card.bookings, card.revenue) == ("helper", 1, 12.5)

        slots = keys_by_slot(org)
        assert len(slots) == 1, f"org {org.pk}'s keys are spread over slots {sorted(slots)}"
        (keys,) = slots.values()
        assert any(b":b:" in k for k in keys)  # its bots' keys too
        masters.add(on_cluster.master_of(keys[0].decode()))
    assert len(masters) > 1  # the orgs really live on different nodes

    # A rebuild from PostgreSQL (transactions and scripts with many keys of the org) comes to
    # the same figures.
    org = orgs[-1]
    before = live_snapshot(org=org, now=now)
    live_rebuild(org=org, now=now)
    after = live_snapshot(org=org, now=now)
    assert after == before
    assert len(keys_by_slot(org)) == 1


@pytest.mark.django_db(transaction=True)
def test_pulse_frames_reach_a_dashboard_socket_and_a_revocation_closes_it(on_cluster, settings):
    from analytics.models import Membership, Role
    from tests.factories import UserFactory

    org = org_with_bots("acme")
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
    now = datetime.now(UTC)

    async def scenario():
        page, connected, _ = await connect("/ws/o/acme/live/", headers)
        assert connected
        hub = get_hub()
        await asyncio.wait_for(hub.ready.wait(), 5)
        for _ in range(50):  # the hub's presence report (a transaction on the cluster)
            if (await sync_to_async(group_members)())[group] == 1:
                break
            await asyncio.sleep(0.1)
        assert (await sync_to_async(group_members)())[group] == 1

        await sync_to_async(events_ingest)(org=org, events=traffic(now, ["sales"], 7), now=now)
        assert org.pk in {int(m) for m in get_redis().smembers(broadcast.dirty_key())}
        assert await sync_to_async(pulse_tick)() >= 1
        frame = await page.receive_from(timeout=5)
        assert 'id="metric-messages-hour"' in frame
        assert ">14<" in frame.replace(" ", "").replace("\n", "")  # 7 in, 7 out

        # Revocation goes through the channel layer (pub/sub on one node of the cluster).
        started = time.monotonic()
        await sync_to_async(browser.post)("/accounts/logout/")
        while True:
            output = await page.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                break
        assert output["code"] == CLOSE_AUTH_ENDED
        assert time.monotonic() - started < 5

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_a_pulse_process_on_the_cluster_is_woken_by_ingestion_and_publishes(on_cluster):
    org = org_with_bots("woken")
    live_recover()  # the masters as they are now: pulse's first tick then has nothing to rebuild
    get_redis().delete(broadcast.dirty_key())  # nor to render (a busy tick holds the next 30 s)
    before = ops_liveness().pulse_at or 0.0
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_tests(),
        "REDIS_URL": on_cluster.url,
        "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",  # a cluster is no broker
        "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
    }
    pulse = subprocess.Popen(
        [sys.executable, "manage.py", "pulse", "--interval", "30"],  # ticks 30 s apart
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    frames = get_redis().pubsub()
    frames.subscribe(channel_prefix() + org_group(org.pk))
    try:
        assert b"at once when idle" in pulse.stdout.readline()
        deadline = time.monotonic() + 30
        while (ops_liveness().pulse_at or 0.0) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (ops_liveness().pulse_at or 0.0) > before, "pulse never finished its first tick"
        time.sleep(0.2)
        sent = time.monotonic()
        now = datetime.now(UTC)
        events_ingest(org=org, events=[message("sales", "c", "inbound", now, text="wake up")])
        received = None
        while received is None and time.monotonic() - sent < 5:
            received = frames.get_message(ignore_subscribe_messages=True, timeout=0.1)
        assert received is not None, "pulse did not publish the new data"
        assert time.monotonic() - sent < 2  # woken by the wake channel, not 30 s later
        assert b"wake up" in received["data"]
    finally:
        frames.close()
        pulse.terminate()
        pulse.wait(timeout=10)


@pytest.mark.django_db
def test_an_erasure_on_the_cluster_cleans_the_feed_and_keeps_its_keys_in_the_org_slot(
    on_cluster, settings, tmp_path
):
    settings.EXPORT_DIR = str(tmp_path)
    now = datetime.now(UTC)
    org = org_with_bots("cluster-erase")
    assert events_ingest(org=org, events=traffic(now, ["sales", "helper"], 8), now=now).live == "ok"
    receipt = customer_erase(org=org, customer="Customer 0", actor_label="dpo")
    assert receipt.counts["conversations"] == 1 and receipt.counts["live_feed_entries"] > 0
    assert not [i for i in live_feed(org=org, limit=50) if i["customer"] == "Customer 0"]
    assert [i for i in live_feed(org=org, limit=50) if i["customer"] == "Customer 1"]
    # A batch that began before the erasure committed reads the tombstone in its pipeline.
    later = [message("sales", "n0", "inbound", now, customer="Customer 0")]
    assert events_ingest(org=org, events=later, now=now).live == "ok"
    assert [i["conversation"] for i in live_feed(org=org) if i["customer"] == "Customer 0"] == [
        Conversation.objects.for_org(org).get(external_id="n0").pk
    ]
    assert len(keys_by_slot(org)) == 1
