"""Several pulses (issue 14): every org rendered by exactly one live pulse, taken over by the
others within seconds when its pulse dies."""

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.conf import settings

from analytics.live_keys import dirty_key, kept_key, pulses_key
from analytics.redis import get_redis
from analytics.services.ingest import events_ingest
from dashboard import broadcast
from dashboard.broadcast import StreamPublisher, org_group, pulse_tick, stream_group
from dashboard.hub import channel_prefix
from dashboard.pulse_shards import PULSE_TTL, PulseShard
from tests import factories as f
from tests.e2e.live_servers import ROOT, database_url_of_tests


@pytest.fixture(autouse=True)
def _no_pulses(redis_client):
    """Start without pulses or dirty marks left by other tests of the run."""
    redis_client.delete(pulses_key(), dirty_key())
    yield
    redis_client.delete(pulses_key())


def test_every_org_has_exactly_one_owner_among_the_live_pulses(redis_client):
    a, b = PulseShard("a"), PulseShard("b")
    now = time.time()
    a.beat(now)
    b.beat(now)
    a.beat(now)
    assert a.live == b.live == ["a", "b"]
    owners = {org: a.owner(org) for org in range(200)}
    assert owners == {org: b.owner(org) for org in range(200)}
    assert all(a.owns(org) != b.owns(org) for org in range(200))
    shares = sorted(list(owners.values()).count(p) for p in ("a", "b"))
    assert shares[0] > 70  # spread, not all on one pulse


def test_the_orgs_of_a_dead_pulse_go_to_the_others(redis_client):
    a, b = PulseShard("a"), PulseShard("b")
    a.beat(1000.0)
    b.beat(1000.0)
    a.beat(1000.5)
    assert not all(a.owns(org) for org in range(50))
    a.beat(1000.0 + PULSE_TTL + 0.5)  # b has not ticked since
    assert a.live == ["a"]
    assert all(a.owns(org) for org in range(50))
    assert redis_client.hkeys(pulses_key()) == [b"a"]


def test_a_pulse_that_leaves_hands_over_at_once(redis_client):
    a, b = PulseShard("a"), PulseShard("b")
    a.beat()
    b.beat()
    b.leave()
    assert a.beat() == ["a"]


@pytest.mark.django_db
def test_a_pulse_takes_only_its_own_orgs_dirty_marks(redis_client, org, other_org):
    mine = PulseShard("mine")
    theirs = PulseShard("theirs")
    theirs.beat()
    mine.beat()
    orgs = [org.pk, other_org.pk] + [f.OrganizationFactory().pk for _ in range(8)]
    redis_client.sadd(dirty_key(), *orgs)
    broadcast.forget_published()
    pulse_tick(mine)
    left = {int(m) for m in redis_client.smembers(dirty_key())}
    assert left == {o for o in orgs if mine.owner(o) == "theirs"}
    assert left and left != set(orgs)


def _pulse(env):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "pulse"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert b"at once when idle" in process.stdout.readline()
    return process


def _event(bot, text):
    return {
        "id": str(uuid.uuid4()),
        "type": "message",
        "bot": bot.slug,
        "conversation": "c-" + text,
        "direction": "inbound",
        "text": text,
    }


def _frames_with(frames, text: str, seconds: float) -> list[float]:
    """When each frame carrying `text` arrived within `seconds` (monotonic clock)."""
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = frames.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message and text.encode() in message["data"]:
            seen.append(time.monotonic())
    return seen


@pytest.mark.django_db(transaction=True)
def test_two_pulses_publish_each_event_once_and_one_survives_the_other(org, bot):
    env = {
        **__import__("os").environ,
        "DATABASE_URL": database_url_of_tests(),
        "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
    }
    get_redis().set(kept_key(), "1")
    first, second = _pulse(env), _pulse(env)
    frames = get_redis().pubsub()
    frames.subscribe(channel_prefix() + org_group(org.pk))
    try:
        deadline = time.monotonic() + 20
        while len(get_redis().hkeys(pulses_key())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(get_redis().hkeys(pulses_key())) == 2, "both pulses tick"
        time.sleep(1.5)
        events_ingest(org=org, events=[_event(bot, "first-of-two")])
        assert len(_frames_with(frames, "first-of-two", 3)) == 1  # one pulse rendered it, not both

        owner = PulseShard("probe")
        owner.live = sorted(k.decode() for k in get_redis().hkeys(pulses_key()))
        pid_of_owner = int(owner.owner(org.pk).split(":")[1])
        victim = first if first.pid == pid_of_owner else second
        victim.kill()  # no clean exit: its entry ages out
        victim.wait(timeout=10)
        killed = time.monotonic()
        events_ingest(org=org, events=[_event(bot, "after-the-kill")])
        arrived = _frames_with(frames, "after-the-kill", 8)
        assert arrived, "nobody rendered the dead pulse's org"
        assert arrived[0] - killed < 5  # taken over within PULSE_TTL and a tick
    finally:
        frames.close()
        for process in (first, second):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)


def _streamed_texts(frames, seconds: float = 0.5) -> list[str]:
    texts, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = frames.get_message(ignore_subscribe_messages=True, timeout=0.05)
        if message and message["data"].startswith(b'{"type":"new_message"'):
            texts.append(orjson.loads(message["data"])["data"]["text"])
    return texts


@pytest.mark.django_db
def test_a_pulse_that_takes_an_org_over_streams_each_event_once_and_late_ones_too(org, bot):
    """What was sent is claimed in Redis, not remembered by one pulse: the pulse that takes the
    org over (here: a fresh one, nothing in its memory) sends nothing twice, and an event with
    an older timestamp than one already sent (a slower request, another web process) still goes."""
    frames = get_redis().pubsub()
    frames.subscribe(channel_prefix() + stream_group(org.pk))
    frames.get_message(timeout=1)
    now = datetime.now(UTC)
    try:
        events_ingest(org=org, events=[_event(bot, "first")], now=now)
        broadcast.forget_published()
        pulse_tick(PulseShard("a"))
        assert _streamed_texts(frames) == ["first"]

        get_redis().delete(pulses_key())
        StreamPublisher.forget(org.pk)  # what a pulse that never rendered the org knows of it
        late = {**_event(bot, "late"), "timestamp": (now - timedelta(seconds=30)).isoformat()}
        events_ingest(org=org, events=[late], now=now)
        pulse_tick(PulseShard("b"))
        assert _streamed_texts(frames) == ["late"]
        pulse_tick(PulseShard("c"))  # a second renderer in the same tick: nothing new
        assert _streamed_texts(frames) == []
    finally:
        frames.close()
