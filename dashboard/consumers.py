"""WebSocket consumers: authenticate in connect(), join only the org's group, then only forward."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from analytics.tenancy import get_org_for_user
from dashboard.broadcast import org_group, stream_bot_group, stream_group
from dashboard.hub import Subscriber, get_hub

CLOSE_FORBIDDEN = 4403  # not signed in, or not a member of this org
CLOSE_TOO_SLOW = 4408  # the client fell too far behind


@database_sync_to_async
def _resolve_org(user, slug: str):
    try:
        return get_org_for_user(user, slug)
    except Http404:
        return None


class DashboardConsumer(AsyncWebsocketConsumer):
    """`/ws/o/<org>/live/`: pushes the org's rendered fragments (HTMX out-of-band swaps)."""

    group: str | None = None

    async def connect(self):
        org = await _resolve_org(
            self.scope.get("user"), self.scope["url_route"]["kwargs"]["org_slug"]
        )
        if org is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        self.group = org_group(org.pk)
        self.subscriber = Subscriber(on_overflow=self._too_slow)
        self.writer = asyncio.get_running_loop().create_task(self._write())
        get_hub().join(self.group, self.subscriber)

    async def _write(self):
        while True:
            frame = await self.subscriber.queue.get()
            await self.send(text_data=frame)

    def _too_slow(self):
        asyncio.get_running_loop().create_task(self.close(code=CLOSE_TOO_SLOW))

    async def receive(self, text_data=None, bytes_data=None):
        # The dashboard socket is push-only; whatever a client sends is ignored.
        return

    async def disconnect(self, code):
        if self.group is not None:
            get_hub().leave(self.group, self.subscriber)
            self.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.writer


@database_sync_to_async
def _stream_key(secret: str):
    from analytics.api.auth import cached_api_key

    api_key = cached_api_key(secret)
    if api_key is None or not api_key.has_scope("read"):
        return None
    return api_key


@database_sync_to_async
def _bot_in_org(org_id: int, slug: str):
    from analytics.models import Bot

    return Bot.objects.for_org(org_id).filter(slug=slug).values_list("id", flat=True).first()


MAX_CLIENT_MESSAGE = 64 * 1024


class StreamConsumer(AsyncWebsocketConsumer):
    """`/ws/v1/stream` for API clients: a `read` key in `Authorization: Bearer <key>` or as the
    subprotocol `bearer.<key>`; JSON events for the whole org, or only the subscribed bots."""

    groups_joined: set[str]

    async def connect(self):
        self.groups_joined = set()
        secret, subprotocol = _secret_from_scope(self.scope)
        api_key = await _stream_key(secret) if secret else None
        if api_key is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept(subprotocol=subprotocol)
        self.org_id = api_key.organization_id
        self.bots: dict[str, int] = {}
        self.subscriber = Subscriber(on_overflow=self._too_slow)
        self.writer = asyncio.get_running_loop().create_task(self._write())
        self._set_groups({stream_group(self.org_id)})

    def _set_groups(self, wanted: set[str]) -> None:
        hub = get_hub()
        for group in self.groups_joined - wanted:
            hub.leave(group, self.subscriber)
        for group in wanted - self.groups_joined:
            hub.join(group, self.subscriber)
        self.groups_joined = wanted

    async def _write(self):
        while True:
            await self.send(text_data=await self.subscriber.queue.get())

    def _too_slow(self):
        asyncio.get_running_loop().create_task(self.close(code=CLOSE_TOO_SLOW))

    async def _error(self, message: str) -> None:
        await self.send(text_data=orjson.dumps({"type": "error", "error": message}).decode())

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
            await self._error(f"Send JSON text messages of at most {MAX_CLIENT_MESSAGE:,} bytes.")
            return
        try:
            message = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            await self._error("Not valid JSON.")
            return
        action = message.get("action") if isinstance(message, dict) else None
        slug = message.get("bot") if isinstance(message, dict) else None
        if action not in ("subscribe", "unsubscribe"):
            await self._error(
                'Unknown action; use {"action": "subscribe" | "unsubscribe", "bot": "<slug>"}.'
            )
            return
        if not isinstance(slug, str) or not slug:
            await self._error('Give the bot\'s slug as "bot".')
            return
        if action == "subscribe":
            bot_id = await _bot_in_org(self.org_id, slug)
            if bot_id is None:
                await self._error(f"No bot with slug {slug!r} in this organization.")
                return
            self.bots[slug] = bot_id
        else:
            self.bots.pop(slug, None)
        wanted = {stream_bot_group(bot_id) for bot_id in self.bots.values()} or {
            stream_group(self.org_id)
        }
        self._set_groups(wanted)
        await self.send(
            text_data=orjson.dumps({"type": f"{action}d", "bots": sorted(self.bots)}).decode()
        )

    async def disconnect(self, code):
        if self.groups_joined:
            self._set_groups(set())
            self.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.writer


def _secret_from_scope(scope) -> tuple[str | None, str | None]:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, secret = value.decode("latin-1").partition(" ")
            if kind == "Bearer" and secret.strip():
                return secret.strip(), None
    for protocol in scope.get("subprotocols", []):
        if protocol.startswith("bearer."):
            return protocol[len("bearer.") :], protocol
    return None, None
