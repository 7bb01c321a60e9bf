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
from dashboard.broadcast import pulse_tick
from dashboard.hub import get_hub
from tests.dashboard.test_consumers import run
from tests.factories import BotFactory

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


def test_a_bot_subscription_narrows_the_stream_and_foreign_bots_are_refused(org, other_org, bot):
    BotFactory(organization=org, slug="sales-bot")
    BotFactory(organization=other_org, slug="claims-bot")
    key = api_key_create(organization=org, name="r", scopes="read").secret

    async def scenario():
        communicator, connected, _ = await open_stream(
            [(b"authorization", f"Bearer {key}".encode())]
        )
        assert connected
        await communicator.send_to(
            text_data=orjson.dumps({"action": "subscribe", "bot": "claims-bot"}).decode()
        )
        assert await receive_json(communicator) == {
            "type": "error",
            "error": "No bot with slug 'claims-bot' in this organization.",
        }
        await communicator.send_to(text_data="not json")
        assert (await receive_json(communicator))["error"] == "Not valid JSON."
        await communicator.send_to(text_data=orjson.dumps({"action": "dance"}).decode())
        assert (await receive_json(communicator))["type"] == "error"
        await communicator.send_to(
            text_data=orjson.dumps({"action": "subscribe", "bot": "sales-bot"}).decode()
        )
        assert await receive_json(communicator) == {"type": "subscribed", "bots": ["sales-bot"]}
        await asyncio.wait_for(get_hub().ready.wait(), 5)
        await sync_to_async(events_ingest)(
            org=org, events=[message("support-bot"), message("sales-bot", "yes")]
        )
        await sync_to_async(pulse_tick)()
        only = await receive_json(communicator)
        assert only["type"] == "new_message" and only["data"]["bot"] == "sales-bot"
        assert await communicator.receive_nothing(timeout=0.5)  # no org metrics, no support-bot
        await communicator.disconnect()

    run(scenario)
