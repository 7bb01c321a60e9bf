"""POST /api/v1/events: what is stored and what the client is told, for good and bad input."""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client

from analytics.models import Activity, Conversation, EventReceipt, Gauge, Message, Organization
from analytics.selectors import live_snapshot
from analytics.services.api_keys import api_key_create, api_key_revoke
from tests.factories import BotFactory, CampaignFactory

URL = "/api/v1/events"


def eid() -> str:
    return str(uuid.uuid4())


def iso(dt: datetime) -> str:
    return dt.isoformat()


@pytest.fixture
def campaign(org, bot):
    return CampaignFactory(organization=org, slug="winter", bot=bot)


@pytest.fixture
def key(org):
    return api_key_create(organization=org, name="platform", scopes="ingest").secret


def post(client: Client, key: str | None, body, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, data, content_type="application/json", **headers, **extra)


def conversation_batch(conv="wa-1", bot="support-bot"):
    return [
        {
            "id": eid(),
            "type": "conversation.started",
            "bot": bot,
            "conversation": conv,
            "customer": "Ana Costa",
            "channel": "whatsapp",
        },
        {
            "id": eid(),
            "type": "message",
            "bot": bot,
            "conversation": conv,
            "direction": "inbound",
            "text": "Can I move my appointment?",
        },
        {
            "id": eid(),
            "type": "message",
            "bot": bot,
            "conversation": conv,
            "direction": "outbound",
            "text": "Sure, Thursday works.",
            "response_time_ms": 900,
            "outcome": "success",
            "tokens": 210,
            "cost_usd": 0.00052,
            "kb_hit": True,
        },
    ]


def test_it_stores_every_event_type(client, org, bot, campaign, key):
    employee = BotFactory(organization=org, slug="jade", kind="ai_employee")
    ended = {
        "id": eid(),
        "type": "conversation.ended",
        "bot": "support-bot",
        "conversation": "wa-1",
        "status": "escalated",
        "handoff": True,
        "csat": 2,
        "call_outcome": "answered",
    }
    events = [
        *conversation_batch(),
        ended,
        {
            "id": eid(),
            "type": "activity",
            "bot": "jade",
            "kind": "booking",
            "description": "Booked",
            "customer": "Ben",
            "value": 120.5,
        },
        {
            "id": eid(),
            "type": "gauge",
            "bot": "support-bot",
            "name": "queue_depth",
            "value": 37,
            "campaign": "winter",
        },
    ]
    response = post(client, key, {"events": events})
    assert response.status_code == 200
    assert response.json() == {"accepted": 6, "duplicates": 0, "rejected": [], "live": "ok"}

    conv = Conversation.objects.for_org(org).get(external_id="wa-1")
    assert (
        conv.customer,
        conv.channel,
        conv.status,
        conv.handoff,
        conv.csat,
        conv.call_outcome,
    ) == ("Ana Costa", "whatsapp", "escalated", True, 2, "answered")
    assert conv.ended_at is not None
    inbound, outbound = Message.objects.for_org(org).order_by("direction")
    assert (inbound.direction, inbound.text, inbound.response_time_ms) == (
        "inbound",
        "Can I move my appointment?",
        None,
    )
    assert (
        outbound.response_time_ms,
        outbound.outcome,
        outbound.tokens,
        str(outbound.cost_usd),
        outbound.kb_hit,
        outbound.conversation_id,
    ) == (900, "success", 210, "0.000520", True, conv.pk)
    activity = Activity.objects.for_org(org).get()
    assert (activity.bot, activity.kind, str(activity.value)) == (employee, "booking", "120.50")
    gauge = Gauge.objects.for_org(org).get()
    assert (gauge.name, gauge.value, gauge.campaign) == ("queue_depth", 37.0, campaign)
    assert EventReceipt.objects.for_org(org).count() == 6


def test_a_message_for_an_unknown_conversation_starts_it(client, org, bot, key):
    event = {
        "id": eid(),
        "type": "message",
        "bot": "support-bot",
        "conversation": "web-9",
        "direction": "inbound",
        "text": "hello",
        "customer": "Omar",
    }
    assert post(client, key, {"events": [event]}).json()["accepted"] == 1
    conv = Conversation.objects.for_org(org).get(external_id="web-9")
    assert (conv.status, conv.customer, conv.channel) == ("active", "Omar", bot.channel)


def test_a_retried_batch_is_stored_once_and_counted_as_duplicates(client, org, bot, key):
    events = conversation_batch()
    post(client, key, {"events": events})
    before = live_snapshot(org=org)
    response = post(client, key, {"events": events})
    assert response.json() == {"accepted": 0, "duplicates": 3, "rejected": [], "live": "ok"}
    assert Message.objects.for_org(org).count() == 2
    assert Conversation.objects.for_org(org).count() == 1
    after = live_snapshot(org=org)
    assert after.messages_last_hour.value == before.messages_last_hour.value == 2


def _message_at(event_id: str, at: datetime, text: str) -> dict:
    return {
        "id": event_id,
        "type": "message",
        "bot": "support-bot",
        "conversation": "wa-7",
        "direction": "inbound",
        "text": text,
        "timestamp": iso(at),
    }


def test_a_retry_with_the_same_id_and_timestamp_is_a_duplicate(client, org, bot, key):
    event = _message_at(eid(), datetime.now(UTC) - timedelta(hours=2), "first")
    assert post(client, key, {"events": [event]}).json()["accepted"] == 1
    response = post(client, key, {"events": [event]})
    assert response.json() == {"accepted": 0, "duplicates": 1, "rejected": [], "live": "ok"}
    assert list(Message.objects.for_org(org).values_list("text", flat=True)) == ["first"]
    assert EventReceipt.objects.for_org(org).count() == 1


def test_an_id_sent_again_with_another_timestamp_in_its_month_is_a_duplicate(client, org, bot, key):
    event_id, now = eid(), datetime.now(UTC)
    earlier = max(now - timedelta(hours=1), now.replace(day=1, hour=0, minute=0, second=0))
    first = post(client, key, {"events": [_message_at(event_id, earlier, "first")]})
    assert first.json()["accepted"] == 1
    again = post(client, key, {"events": [_message_at(event_id, now, "second")]})
    assert again.json() == {"accepted": 0, "duplicates": 1, "rejected": [], "live": "ok"}
    message = Message.objects.for_org(org).get()
    assert (message.text, message.created_at) == ("first", earlier)
    assert EventReceipt.objects.for_org(org).count() == 1


def test_an_id_sent_again_with_a_timestamp_in_another_month_is_a_new_event(client, org, bot, key):
    # the documented key is (id, the UTC month of its timestamp): 40 days back is another month
    event_id, now = eid(), datetime.now(UTC)
    post(client, key, {"events": [_message_at(event_id, now - timedelta(days=40), "first")]})
    again = post(client, key, {"events": [_message_at(event_id, now, "second")]})
    assert again.json()["accepted"] == 1
    texts = Message.objects.for_org(org).order_by("created_at").values_list("text", flat=True)
    assert list(texts) == ["first", "second"]


def test_an_id_of_another_org_is_not_a_duplicate(client, org, other_org, bot, key):
    BotFactory(organization=other_org, slug="support-bot")
    other_key = api_key_create(organization=other_org, name="k", scopes="ingest").secret
    event = _message_at(eid(), datetime.now(UTC) - timedelta(days=40), "hello")
    assert post(client, key, {"events": [event]}).json()["accepted"] == 1
    event["timestamp"] = iso(datetime.now(UTC))
    assert post(client, other_key, {"events": [event]}).json()["accepted"] == 1
    assert Message.objects.for_org(other_org).count() == 1


def test_the_same_id_twice_in_one_batch_is_one_event(client, org, bot, key):
    event = conversation_batch()[1]
    response = post(client, key, {"events": [event, event]})
    assert response.json()["accepted"] == 1 and response.json()["duplicates"] == 1
    assert Message.objects.for_org(org).count() == 1


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"type": "nonsense"}, "type", "Must be one of"),
        ({"id": "not-a-uuid"}, "id", "Must be a UUID (8-4-4-4-12 hexadecimal digits)."),
        ({"id": None}, "id", "This field is required"),
        ({"bot": "ghost"}, "bot", "No bot with slug 'ghost' in this organization."),
        ({"direction": "sideways"}, "direction", "Must be one of: inbound, outbound."),
        ({"conversation": None}, "conversation", "This field is required."),
        ({"text": "x" * 10_001}, "text", "At most 10,000 characters (got 10,001)."),
        ({"text": 42}, "text", "Must be a string."),
        ({"response_time_ms": -5}, "response_time_ms", "Must be between 0 and 3,600,000."),
        ({"response_time_ms": "fast"}, "response_time_ms", "Must be an integer."),
        ({"tokens": 10**12}, "tokens", "Must be between"),
        ({"cost_usd": -1}, "cost_usd", "Must be between"),
        ({"cost_usd": "NaN"}, "cost_usd", "Must be between"),
        ({"kb_hit": "yes"}, "kb_hit", "Must be true or false or null."),
        ({"outcome": "great"}, "outcome", "Must be one of: failed, fallback, success."),
        ({"timestamp": "yesterday"}, "timestamp", "ISO 8601"),
        ({"timestamp": "2026-11-23T10:00:00"}, "timestamp", "Must include a UTC offset"),
        (
            {"timestamp": iso(datetime.now(UTC) + timedelta(hours=1))},
            "timestamp",
            "5 minutes in the future",
        ),
        (
            {"timestamp": iso(datetime.now(UTC) - timedelta(days=400))},
            "timestamp",
            "older than the retention",
        ),
    ],
)
def test_a_bad_event_is_rejected_by_field_and_the_rest_are_kept(
    client, org, bot, key, change, field, message
):
    good = conversation_batch()
    bad = {**good[2], "id": eid(), "conversation": "other", **change}
    response = post(client, key, {"events": [good[0], bad, good[1]]})
    body = response.json()
    assert response.status_code == 200
    assert body["accepted"] == 2
    [rejected] = body["rejected"]
    assert rejected["index"] == 1 and rejected["id"] == bad["id"]
    assert message in rejected["errors"][field]
    assert Message.objects.for_org(org).count() == 1
    assert not Conversation.objects.for_org(org).filter(external_id="other").exists()


def test_it_rejects_events_that_are_not_objects_and_other_event_type_errors(client, org, bot, key):
    events = [
        "just a string",
        {
            "id": eid(),
            "type": "conversation.ended",
            "bot": "support-bot",
            "conversation": "c",
            "status": "done",
            "csat": 9,
        },
        {"id": eid(), "type": "activity", "bot": "support-bot", "kind": "party", "value": -3},
        {"id": eid(), "type": "gauge", "bot": "support-bot", "name": "queue depth!"},
        {
            "id": eid(),
            "type": "conversation.started",
            "bot": "support-bot",
            "conversation": "c",
            "campaign": "nope",
            "channel": "fax",
        },
    ]
    rejected = {
        r["index"]: r["errors"] for r in post(client, key, {"events": events}).json()["rejected"]
    }
    assert rejected[0] == {"event": "Must be a JSON object."}
    assert set(rejected[1]) == {"status", "csat"}
    assert set(rejected[2]) == {"kind", "value"}
    assert set(rejected[3]) == {"name", "value"}
    assert set(rejected[4]) == {"campaign", "channel"}
    assert not Conversation.objects.exists() and not Activity.objects.exists()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("{not json", 400, "The body is not valid JSON"),
        ("[1, 2]", 400, 'The body must be a JSON object like {"events": [...]}.'),
        ("{}", 400, 'The body has no "events" field.'),
        ('{"events": {"a": 1}}', 400, '"events" must be a list.'),
    ],
)
def test_a_malformed_envelope_is_a_400_and_stores_nothing(client, bot, key, body, status, message):
    response = post(client, key, body)
    assert response.status_code == status
    assert response.json()["detail"].startswith(message)
    assert not EventReceipt.objects.exists()


def test_more_than_1000_events_is_a_400_and_stores_nothing(client, bot, key):
    events = [conversation_batch()[1] | {"id": eid()} for _ in range(1001)]
    response = post(client, key, {"events": events})
    assert response.status_code == 400
    assert response.json()["detail"] == '"events" has 1,001 events; at most 1,000 per request.'
    assert not Message.objects.exists()


def test_a_body_over_5_mb_is_a_413_and_stores_nothing(client, bot, key):
    text = "x" * 9_000
    events = [conversation_batch()[1] | {"id": eid(), "text": text} for _ in range(600)]
    response = post(client, key, {"events": events})
    assert response.status_code == 413
    assert "at most 5,242,880" in response.json()["detail"]
    assert not Message.objects.exists()


def test_it_requires_a_valid_active_key_with_the_ingest_scope(client, org, bot):
    body = {"events": conversation_batch()}
    assert post(client, None, body).status_code == 401
    assert post(client, "bf_00000000_forged", body).json() == {"detail": "Unknown API key."}
    revoked = api_key_create(organization=org, name="old", scopes="ingest")
    api_key_revoke(api_key=revoked.api_key)
    response = post(client, revoked.secret, body)
    assert response.status_code == 401
    assert response.json() == {"detail": "This API key has been revoked."}
    read_only = api_key_create(organization=org, name="reader", scopes="read").secret
    response = post(client, read_only, body)
    assert response.status_code == 403
    assert response.json() == {"detail": "This API key lacks the 'ingest' scope."}
    assert not EventReceipt.objects.exists()


def test_a_key_writes_only_into_its_own_org(client, org, other_org, key):
    BotFactory(organization=other_org, slug="claims-bot")
    event = conversation_batch(bot="claims-bot")[1] | {"organization": "globex"}
    body = post(client, key, {"events": [event]}).json()
    assert (
        body["rejected"][0]["errors"]["bot"]
        == "No bot with slug 'claims-bot' in this organization."
    )
    assert not Message.objects.exists()


def test_a_client_sending_too_fast_gets_429_with_retry_after(client, org, bot, key, settings):
    settings.INGEST_RATE_LIMIT = 2
    statuses = [post(client, key, {"events": []}) for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert limited[0]["Retry-After"] == "1"
    other_key = api_key_create(organization=org, name="other", scopes="ingest").secret
    assert post(client, other_key, {"events": []}).status_code == 200  # not a slowdown for everyone


def test_without_redis_events_are_stored_and_live_state_catches_up(client, org, bot, key, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = post(client, key, {"events": conversation_batch("c1")})
    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": [], "live": "delayed"}
    assert Message.objects.for_org(org).count() == 2
    org.refresh_from_db()
    assert org.live_stale_since is not None

    settings.REDIS_URL = django_redis_url()
    response = post(client, key, {"events": conversation_batch("c2")})
    assert response.json()["live"] == "ok"
    org.refresh_from_db()
    assert org.live_stale_since is None
    snapshot = live_snapshot(org=org)
    assert snapshot.messages_last_hour.value == 4  # both batches, rebuilt from PostgreSQL
    assert snapshot.active_now == 2


def django_redis_url() -> str:
    import os

    return os.environ["REDIS_URL"]


@contextmanager
def postgresql_unreachable():
    """Point new connections at a port where nothing listens (a real refused connection)."""
    settings_dict = connection.settings_dict
    original_port, original_options = settings_dict["PORT"], dict(settings_dict["OPTIONS"])
    connection.close()
    connection.close_pool()
    settings_dict["PORT"] = "1"
    if "pool" in original_options:
        settings_dict["OPTIONS"] = {
            **original_options,
            "pool": {**original_options["pool"], "timeout": 1},
        }
    try:
        yield
    finally:
        connection.close()
        connection.close_pool()
        settings_dict["PORT"], settings_dict["OPTIONS"] = original_port, original_options


@pytest.mark.django_db(transaction=True)
def test_without_postgresql_it_answers_503_and_stores_nothing(org, bot, key):
    client = Client()
    with postgresql_unreachable():
        response = post(client, key, {"events": conversation_batch()})
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "nothing was stored" in response.json()["detail"]
    assert not EventReceipt.objects.exists()
    assert (
        post(client, key, {"events": conversation_batch()}).json()["accepted"] == 3
    )  # retry works


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_store_each_event_exactly_once(org, bot, key):
    events = [e for i in range(40) for e in conversation_batch(f"conv-{i}")]
    results = []

    def send():
        results.append(post(Client(), key, {"events": events}).json())
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["accepted"] for r in results) == [0, 0, 120]
    assert sum(r["duplicates"] for r in results) == 240
    assert Message.objects.for_org(org).count() == 80
    assert Conversation.objects.for_org(org).count() == 40
    assert live_snapshot(org=org).messages_last_hour.value == 80


def test_org_is_untouched_by_other_orgs_batches(client, org, other_org, bot):
    BotFactory(organization=other_org, slug="support-bot")
    other_key = api_key_create(organization=other_org, name="k", scopes="ingest").secret
    post(client, other_key, {"events": conversation_batch()})
    assert Message.objects.for_org(other_org).count() == 2
    assert Message.objects.for_org(org).count() == 0
    assert live_snapshot(org=org).messages_last_hour.value == 0
    assert Organization.objects.get(pk=org.pk).live_stale_since is None
