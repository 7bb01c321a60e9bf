"""Every key of an org carries the org's hash tag, so on a Redis Cluster all of them (its bots'
included) share one slot: the org's transactions and multi-key scripts stay possible there."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from redis.crc import key_slot

from analytics.live_keys import bot_key, org_key, org_tag
from analytics.services.ingest import events_ingest
from tests.factories import BotFactory


def test_org_and_bot_keys_carry_the_org_tag_and_share_its_slot():
    keys = [
        org_key(7, "m", 29_000_000),
        org_key(7, "feed"),
        bot_key(7, 123, "h", 29_000_000),
        bot_key(7, 9, "d", "20261204"),
    ]
    assert org_tag(7) == "{o:7}"
    assert all(":{o:7}:" in key for key in keys)
    assert {key_slot(key.encode()) for key in keys} == {key_slot(b"{o:7}")}
    assert key_slot(org_key(7, "m", 1).encode()) != key_slot(org_key(8, "m", 1).encode())


@pytest.mark.django_db
def test_every_key_ingestion_writes_for_an_org_is_in_the_org_slot(org, redis_client):
    BotFactory(organization=org, slug="sales", name="Sales")
    BotFactory(organization=org, slug="helper", name="Helper", kind="ai_employee")
    now = datetime.now(UTC)
    events = []
    for i in range(6):
        at = (now - timedelta(minutes=i)).isoformat()
        bot = ("sales", "helper")[i % 2]
        common = {"type": "message", "bot": bot, "conversation": f"c{i}", "timestamp": at}
        events += [
            {**common, "id": str(uuid.uuid4()), "direction": "inbound", "customer": "Ana"},
            {**common, "id": str(uuid.uuid4()), "direction": "outbound", "response_time_ms": 90},
        ]
    events.append(
        {
            "id": str(uuid.uuid4()),
            "type": "activity",
            "bot": "helper",
            "kind": "booking",
            "description": "Booked",
            "timestamp": now.isoformat(),
        }
    )
    assert events_ingest(org=org, events=events, now=now).live == "ok"

    prefix = settings.LIVE_KEY_PREFIX
    written = [k.decode() for k in redis_client.scan_iter(f"{prefix}:*{org_tag(org.pk)}*")]
    kinds = {k.removeprefix(f"{prefix}:{org_tag(org.pk)}:").split(":")[0] for k in written}
    assert kinds >= {"m", "h", "b", "active", "feed", "acts", "u"}
    assert {key_slot(k.encode()) for k in written} == {key_slot(org_tag(org.pk).encode())}
    # No key of the org was written without its tag (the old layout {prefix}:o:<id>:...).
    assert not list(redis_client.scan_iter(f"{prefix}:o:*"))
    assert not list(redis_client.scan_iter(f"{prefix}:b:*"))
