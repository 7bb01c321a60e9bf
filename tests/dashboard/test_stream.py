"""`/ws/v1/stream`: API-key auth, JSON events, and bot subscriptions scoped to the key's org."""

import asyncio
import uuid

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from analytics.services.api_keys import api_key_create
from analytics.services.ingest import events_ingest
from config.asgi import application
from dashboard import broadcast, presence
from dashboard.broadcast import pulse_tick, stream_group
from dashboard.hub import get_hub
from tests.dashboard.test_consumers import run
from tests.factories import BotFactory, CampaignFactory

pytestmark = pytest.mark.django_db(transaction=True)


def message(bot="support-bot", text="hello"):
    return {
        "id": str(uuid.uuid4()),
        "type": "message",
        "bot": bot,
        "conversation": f"c-{bot}",
        "direction": "inbound",
        "text": text,
    }


async def open_stream(headers=(), subprotocols=()):
    communicator = WebsocketCommunicator(
        application, "/ws/v1/stream", headers=list(headers), subprotocols=list(subprotocols)
    )
    connected, detail = await communicator.connect(timeout=5)
    return communicator, connected, detail


async def receive_json(communicator):
    return orjson.loads(await communicator.receive_from(timeout=5))


def test_it_refuses_a_missing_wrong_or_write_only_key(org):
    ingest_only = api_key_create(organization=org, name="w", scopes="ingest").secret

    async def scenario():
        for headers in (
            [],
            [(b"authorization", b"Bearer bf_nope_nope")],
            [(b"authorization", f"Bearer {ingest_only}".encode())],
        ):
            communicator, connected, code = await open_stream(headers)
            assert not connected and code == 4403, headers

    run(scenario)


def test_it_streams_metrics_and_new_messages_with_a_subprotocol_key(org, bot):
    key = api_key_create(organization=org, name="r", scopes="read").secret

    async def scenario():
        communicator, connected, protocol = await open_stream(subprotocols=[f"bearer.{key}"])
        assert connected and protocol == f"bearer.{key}"
        await asyncio.wait_for(get_hub().ready.wait(), 5)
        await sync_to_async(events_ingest)(org=org, events=[message(text="<b>hi</b>")])
        await sync_to_async(pulse_tick)()
        metrics = await receive_json(communicator)
        assert metrics["type"] == "metrics_update" and "timestamp" in metrics
        assert metrics["metrics"]["messages_last_hour"]["value"] == 1
        new_message = await receive_json(communicator)
        assert new_message["type"] == "new_message"
        assert (
            new_message["data"]["text"] == "<b>hi</b>"
            and new_message["data"]["bot"] == "support-bot"
        )
        await communicator.disconnect()

    run(scenario)


async def wait_for_group(group: str) -> None:
    """Until this process's hub has reported the group (pulse renders only watched scopes)."""
    for _ in range(100):
        if (await sync_to_async(presence.group_members)()).get(group):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{group} was never reported")


async def send_json(communicator, message) -> dict:
    await communicator.send_to(text_data=orjson.dumps(message).decode())
    return await receive_json(communicator)


def test_a_bot_subscription_narrows_the_stream_and_foreign_bots_are_refused(org, other_org, bot):
    sales = BotFactory(organization=org, slug="sales-bot")
    BotFactory(organization=other_org, slug="claims-bot")
    key = api_key_create(organization=org, name="r", scopes="read").secret

    async def scenario():
        communicator, connected, _ = await open_stream(
            [(b"authorization", f"Bearer {key}".encode())]
        )
        assert connected
        assert await send_json(communicator, {"action": "subscribe", "bot": "claims-bot"}) == {
            "type": "error",
            "error": "No bot with slug 'claims-bot' in this organization.",
        }
        await communicator.send_to(text_data="not json")
        assert (await receive_json(communicator))["error"] == "Not valid JSON."
        reply = await send_json(communicator, {"action": "dance"})
        assert reply["type"] == "error" and reply["error"].startswith("Unknown action.")
        reply = await send_json(communicator, {"action": "subscribe", "bot": "x", "campaign": "y"})
        assert reply["error"] == 'Give either "bot" or "campaign", not both.'
        reply = await send_json(communicator, {"action": "subscribe", "bot": "sales-bot"})
        assert reply == {"type": "subscribed", "bots": ["sales-bot"], "campaigns": []}
        await wait_for_group(stream_group(org.pk, bot_id=sales.pk))
        await sync_to_async(events_ingest)(
            org=org, events=[message("support-bot"), message("sales-bot", "yes")]
        )
        await sync_to_async(pulse_tick)()
        metrics = await receive_json(communicator)
        assert metrics["type"] == "metrics_update" and metrics["bot"] == "sales-bot"
        assert metrics["metrics"]["messages_last_hour"]["value"] == 1  # the bot's, not the org's 2
        only = await receive_json(communicator)
        assert only["type"] == "new_message" and only["data"]["bot"] == "sales-bot"
        assert await communicator.receive_nothing(timeout=0.5)  # no org metrics, no support-bot
        reply = await send_json(communicator, {"action": "unsubscribe"})
        assert reply == {"type": "unsubscribed", "bots": [], "campaigns": []}
        await sync_to_async(events_ingest)(org=org, events=[message("support-bot", "again")])
        await sync_to_async(pulse_tick)()
        assert (await receive_json(communicator))["type"] == "metrics_update"  # the org's again
        again = await receive_json(communicator)
        assert again["data"]["bot"] == "support-bot" and again["data"]["text"] == "again"
        await communicator.disconnect()

    run(scenario)


def test_a_campaign_subscription_gets_its_calls_figures_and_status_changes(org, other_org, bot):
    campaign = CampaignFactory(organization=org, slug="spring", name="Spring", bot=bot)
    CampaignFactory(organization=other_org, slug="autumn")
    key = api_key_create(organization=org, name="r", scopes="read").secret
    call = {
        "type": "conversation.started",
        "bot": "support-bot",
        "customer": "+44 20 7946 0000",
        "channel": "voice",
    }

    async def scenario():
        communicator, connected, _ = await open_stream(subprotocols=[f"bearer.{key}"])
        assert connected
        reply = await send_json(communicator, {"action": "subscribe", "campaign": "autumn"})
        assert reply["error"] == "No campaign with slug 'autumn' in this organization."
        reply = await send_json(communicator, {"action": "subscribe", "campaign": "spring"})
        assert reply == {"type": "subscribed", "bots": [], "campaigns": ["spring"]}
        await wait_for_group(stream_group(org.pk, campaign_id=campaign.pk))
        broadcast._last_heartbeat = 0.0  # a heartbeat: pulse sees the watched org's campaigns
        await sync_to_async(pulse_tick)()
        while await communicator.receive_nothing(timeout=0.3) is False:
            await communicator.receive_from()
        await sync_to_async(events_ingest)(
            org=org,
            events=[
                {**call, "id": str(uuid.uuid4()), "conversation": "call-1", "campaign": "spring"},
                {**call, "id": str(uuid.uuid4()), "conversation": "chat-2"},  # not the campaign's
                {
                    "id": str(uuid.uuid4()),
                    "type": "conversation.ended",
                    "bot": "support-bot",
                    "conversation": "call-1",
                    "status": "resolved",
                    "call_outcome": "converted",
                },
            ],
        )
        campaign.status = "paused"
        await sync_to_async(campaign.save)()
        await sync_to_async(pulse_tick)()
        received = [await receive_json(communicator) for _ in range(4)]
        assert await communicator.receive_nothing(timeout=0.5)
        by_type = {}
        for event in received:
            by_type.setdefault(event["type"], []).append(event)
            assert event["timestamp"]
        figures = by_type["metrics_update"][0]
        assert figures["campaign"] == "spring"
        assert figures["metrics"]["attempts"] == 1
        assert figures["metrics"]["outcomes"]["converted"] == 1
        started, ended = by_type["call_event"]
        assert (started["data"]["event"], ended["data"]["event"]) == ("started", "ended")
        assert started["data"]["customer"] == "+44 20 7946 0000"
        assert started["data"]["channel"] == "voice"
        assert ended["data"]["call_outcome"] == "converted"
        assert {e["data"]["campaign"] for e in by_type["call_event"]} == {"spring"}
        (change,) = by_type["campaign_status_change"]
        assert change["data"] == {
            "campaign": "spring",
            "name": "Spring",
            "status": "paused",
            "previous": "active",
        }
        await communicator.disconnect()

    run(scenario)


def test_watched_orgs_get_a_system_health_update_every_few_seconds(org, bot):
    key = api_key_create(organization=org, name="r", scopes="read").secret

    async def scenario():
        communicator, connected, _ = await open_stream(subprotocols=[f"bearer.{key}"])
        assert connected
        await wait_for_group(stream_group(org.pk))
        broadcast._last_heartbeat = 0.0  # the next tick is a heartbeat, with no new events
        await sync_to_async(pulse_tick)()
        events = []
        while not await communicator.receive_nothing(timeout=0.5):
            events.append(await receive_json(communicator))
        (health,) = [e for e in events if e["type"] == "system_health_update"]
        # the host's CPU and memory are the platform's, never a tenant's
        assert "cpu_percent" not in health["data"] and "memory_percent" not in health["data"]
        assert health["data"]["viewers"] == 0  # an API stream is not a dashboard viewer
        assert health["data"]["active_campaigns"] == 0
        await sync_to_async(pulse_tick)()  # not a heartbeat, nothing new: silence
        while not await communicator.receive_nothing(timeout=0.3):
            assert (await receive_json(communicator))["type"] == "metrics_update"
        await communicator.disconnect()

    run(scenario)
