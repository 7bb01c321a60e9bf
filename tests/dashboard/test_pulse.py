"""The pulse process: an idle pulse renders new data at once, not at its next tick."""

import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings

from analytics.live_keys import dirty_key, kept_key
from analytics.redis import get_redis
from analytics.services.ingest import events_ingest
from analytics.services.ops import ops_liveness
from dashboard.broadcast import org_group
from dashboard.hub import channel_prefix
from tests.e2e.live_servers import ROOT, database_url_of_tests


@pytest.mark.django_db(transaction=True)
def test_an_idle_pulse_publishes_new_data_within_moments(org, bot):
    env = {
        **__import__("os").environ,
        "DATABASE_URL": database_url_of_tests(),
        "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
    }
    # Redis holds this run's live state: pulse's first tick rebuilds nothing and is not busy
    # (a busy tick would hold the next one 30 s).
    get_redis().set(kept_key(), "1")
    get_redis().delete(dirty_key())  # nor left over by earlier tests' ingestion (same reason)
    before = ops_liveness().pulse_at or 0.0
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
        # Its first tick is over (it records each tick's time): it now waits for data.
        deadline = time.monotonic() + 30
        while (ops_liveness().pulse_at or 0.0) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (ops_liveness().pulse_at or 0.0) > before, "pulse never finished its first tick"
        time.sleep(0.2)
        event = {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": "support-bot",
            "conversation": "c",
            "direction": "inbound",
            "text": "wake up",
        }
        sent = time.monotonic()
        events_ingest(org=org, events=[event])
        message = None
        while message is None and time.monotonic() - sent < 5:
            message = frames.get_message(ignore_subscribe_messages=True, timeout=0.1)
        assert message is not None, "pulse did not publish the new data"
        assert time.monotonic() - sent < 2  # not 30 s later at the next tick
        assert b"wake up" in message["data"]
    finally:
        frames.close()
        pulse.terminate()
        pulse.wait(timeout=10)


def _report(groups: dict[str, int]) -> None:
    import asyncio

    import redis.asyncio as aioredis

    from dashboard import presence

    async def go():
        client = aioredis.from_url(settings.REDIS_URL)
        try:
            await presence.report(client, groups, process="test-web:1")
        finally:
            await client.aclose()

    asyncio.run(go())


@pytest.mark.django_db(transaction=True)
def test_a_scope_watched_after_its_data_arrived_is_rendered_at_the_next_tick(org, bot):
    """A page narrowed to one bot: its socket joins the bot's group, but its process reports the
    new group a moment later. Data ingested in between must not wait for the 5 s heartbeat."""
    from dashboard import broadcast
    from dashboard.broadcast import pulse_tick, scoped_group

    sales = type(bot).objects.create(organization=org, slug="sales-bot", name="Sales")
    group = scoped_group(org.pk, bot_id=sales.pk)
    frames = get_redis().pubsub()
    frames.subscribe(channel_prefix() + group)
    frames.get_message(timeout=1)  # the subscription's confirmation
    try:
        _report({org_group(org.pk): 1})
        pulse_tick()  # the heartbeat tick: only the whole org is watched
        event = {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": "sales-bot",
            "conversation": "s",
            "direction": "inbound",
            "text": "for sales",
        }
        events_ingest(org=org, events=[event])
        pulse_tick()  # new data; the scope is not reported yet
        assert frames.get_message(timeout=0.2) is None
        _report({group: 1})
        assert pulse_tick() == 0  # no new data ...
        frame = frames.get_message(timeout=1)
        assert frame is not None, "the newly watched scope was not rendered"  # ... yet rendered
        assert b"for sales" in frame["data"] and b'data-scope="bot:sales-bot"' in frame["data"]
        assert b'data-as-of="0"' not in frame["data"]  # the snapshot's time, not the mark
        pulse_tick()
        assert frames.get_message(timeout=0.2) is None  # nothing new: nothing sent
    finally:
        frames.close()
        broadcast._watched_before.clear()
