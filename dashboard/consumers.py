"""WebSocket consumers: authenticate in connect(), join only the org's group, then only forward."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import orjson
import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils.html import format_html

from analytics.api.auth import cached_api_key
from analytics.models import Bot, Campaign
from analytics.services.api_keys import api_key_find
from dashboard.access import Batch, SessionUser, member_access, session_user
from dashboard.broadcast import org_group, scoped_group, stream_group
from dashboard.hub import Subscriber, WireWriter, get_hub
from dashboard.revocation import (
    CLOSE_AUTH_ENDED,
    CLOSE_NOT_ALLOWED,
    Watch,
    api_key_group,
    get_revoker,
    session_tag,
    user_group,
)

CLOSE_FORBIDDEN = 4403  # not signed in, or not a member of this org
CLOSE_TOO_SLOW = 4408  # the client fell too far behind
# Live updates are unavailable (Redis is down): try again shortly. Not the standard 1013, which
# the server's WebSocket stack (autobahn) refuses to send — it allows only 1000 and 3000-4999 —
# so a close with 1013 raised in the server and left the socket open and silent.
CLOSE_TRY_LATER = 4013


# A burst of connects shares worker-thread calls and pooled connections (dashboard.access.Batch).
_session_user = Batch(session_user)
_member_access = Batch(member_access)


async def _member_access_code(who: SessionUser, slug: str) -> int | None:
    """A dashboard socket's re-check: None while it holds, else 4401 / 4403."""
    return (await _member_access(who, slug))[1]


async def _admit(consumer, watch: Watch, check: Callable[[], Awaitable[int | None]]) -> bool:
    """Register a socket with the process's revoker, which joins its user's or key's group, and
    only then run `check` (None: access holds; else a close code). A revocation committed after
    the check read the database is a message the revoker receives; one received while the
    socket was being set up is applied here (Revoker.missed). Refuses the socket, and says
    False, if its access does not hold or the layer cannot be reached."""
    revoker = get_revoker()
    try:
        await revoker.watch(watch)
    except (redis.RedisError, OSError):
        await consumer.close(code=CLOSE_TRY_LATER)
        return False
    asyncio.current_task().add_done_callback(lambda _: get_revoker().unwatch(watch))
    code = await check()
    missed = revoker.missed(watch) if code is None else None
    if missed is not None:
        code = await watch.recheck() if missed.get("recheck") else missed["code"]
    if consumer.ended:
        return False  # the revoker already ended it while the check ran
    if code is not None:
        revoker.unwatch(watch)
        await consumer.close(code=CLOSE_FORBIDDEN)
        return False
    return True


class DashboardConsumer(AsyncWebsocketConsumer):
    """`/ws/o/<org>/live/`: pushes the org's rendered fragments (HTMX out-of-band swaps)."""

    group: str | None = None
    ended = False  # access ended (logout, membership removed, ...): the socket is closing
    # No channel layer: frames come from the process's hub, so the socket needs no layer channel,
    # and no per-socket layer receive that could fail (e.g. a Redis read timeout under load) and
    # take the consumer down before disconnect() removes it from its group.
    channel_layer_alias = "no-channel-layer"

    async def connect(self):
        slug = self.scope["url_route"]["kwargs"]["org_slug"]
        session = self.scope.get("session")
        session_key = session.session_key if session is not None else None
        who = await _session_user(session_key)
        if who is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if not await get_hub().redis_ok():
            # Nothing would be pushed: refuse, and the page polls over HTTP until a retry succeeds.
            await self.close(code=CLOSE_TRY_LATER)
            return

        async def check() -> int | None:
            self.org_id, code = await _member_access(who, slug)
            watch.org_id = self.org_id  # from now on, a removal from this org applies to it
            return code

        watch = Watch(
            group=user_group(who.user_id),
            close=self._access_ended,
            session=session_tag(session_key),
            recheck=lambda: _member_access_code(who, slug),
        )
        if not await _admit(self, watch, check):
            return
        await self.accept()
        self.group = org_group(self.org_id)
        self.subscriber = Subscriber(
            on_overflow=self._too_slow,
            send=self._send_frame,
            wire=WireWriter.for_send(self.base_send),
            on_lost=self._live_lost,
        )
        get_hub().join(self.group, self.subscriber)
        # However this consumer ends — disconnect(), or daphne cancelling an instance whose socket
        # timed out while connect() waited on the database — the socket leaves its group.
        asyncio.current_task().add_done_callback(
            lambda _: get_hub().leave(self.group, self.subscriber)
        )

    def _send_frame(self, frame: str):
        # Straight to the server's send: one coroutine per frame, stepped in place by the hub.
        return self.base_send({"type": "websocket.send", "text": frame})

    def _too_slow(self):
        asyncio.get_running_loop().create_task(self.close(code=CLOSE_TOO_SLOW))

    def _live_lost(self):
        asyncio.get_running_loop().create_task(self.close(code=CLOSE_TRY_LATER))

    def _access_ended(self, code: int) -> None:
        """The revoker's call: not one more frame (even one already on its way), then close."""
        self.ended = True
        if self.group is not None:
            get_hub().leave(self.group, self.subscriber)
            self.subscriber.close()
        asyncio.get_running_loop().create_task(self.close(code=code))

    async def receive(self, text_data=None, bytes_data=None):
        """`{"action": "subscribe", "bot" | "campaign": "<slug>"}` narrows the socket to that bot
        or campaign of the org; `{"action": "unsubscribe"}` widens it to the whole org again."""
        if self.ended:
            return
        request = parse_subscription(text_data)
        if isinstance(request, str):
            await self._notice(request)
            return
        action, kind, slug = request
        group = org_group(self.org_id)
        if action == "subscribe":
            pk = await _target_in_org(self.org_id, kind, slug)
            if pk is None:
                await self._notice(f"No {kind} with slug {slug!r} in this organization.")
                return
            group = scoped_group(self.org_id, **{f"{kind}_id": pk})
        if self.ended:
            return
        if group != self.group:
            hub = get_hub()
            hub.leave(self.group, self.subscriber)
            self.group = group
            hub.join(group, self.subscriber)
        await self._notice("")

    async def _notice(self, message: str) -> None:
        """The page's notice line (out-of-band), e.g. why a subscription was refused."""
        await self.send(
            text_data=format_html(
                '<p id="live-notice" class="notice{}" role="status" hx-swap-oob="true">{}</p>',
                "" if message else " is-empty",
                message,
            )
        )

    async def disconnect(self, code):
        if self.group is not None:
            get_hub().leave(self.group, self.subscriber)
            self.subscriber.close()


@database_sync_to_async
def _stream_key(secret: str):
    api_key = cached_api_key(secret)
    if api_key is None or not api_key.has_scope("read"):
        return None
    return api_key


@database_sync_to_async
def _stream_key_access(secret: str) -> int | None:
    """Re-checks a stream socket's key, uncached: None while it may read, 4401 once revoked or
    deleted, 4403 once it lost the `read` scope."""
    api_key = api_key_find(secret)
    if api_key is None or not api_key.is_active:
        return CLOSE_AUTH_ENDED
    return None if api_key.has_scope("read") else CLOSE_NOT_ALLOWED


@database_sync_to_async
def _target_in_org(org_id: int, kind: str, slug: str) -> int | None:
    """The id of the org's bot or campaign with this slug (None for anything else)."""
    model = Bot if kind == "bot" else Campaign
    return model.objects.for_org(org_id).filter(slug=slug).values_list("id", flat=True).first()


MAX_CLIENT_MESSAGE = 64 * 1024
SUBSCRIBE_HELP = (
    'Send {"action": "subscribe" | "unsubscribe", "bot": "<slug>"} '
    'or {"action": "subscribe" | "unsubscribe", "campaign": "<slug>"}.'
)


def parse_subscription(text_data) -> tuple[str, str, str] | str:
    """(action, "bot" | "campaign" | "", slug) from a client's message, or the error to send.
    `unsubscribe` without a target means "everything" (the whole org again)."""
    if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
        return f"Send JSON text messages of at most {MAX_CLIENT_MESSAGE:,} bytes."
    try:
        message = orjson.loads(text_data)
    except orjson.JSONDecodeError:
        return "Not valid JSON."
    if not isinstance(message, dict) or message.get("action") not in ("subscribe", "unsubscribe"):
        return f"Unknown action. {SUBSCRIBE_HELP}"
    targets = [kind for kind in ("bot", "campaign") if kind in message]
    if len(targets) > 1:
        return 'Give either "bot" or "campaign", not both.'
    if not targets:
        if message["action"] == "unsubscribe":
            return "unsubscribe", "", ""
        return f'Give the slug of a "bot" or a "campaign". {SUBSCRIBE_HELP}'
    slug = message[targets[0]]
    if not isinstance(slug, str) or not slug or len(slug) > 60:
        return f'"{targets[0]}" must be a slug of at most 60 characters.'
    return message["action"], targets[0], slug


class StreamConsumer(AsyncWebsocketConsumer):
    """`/ws/v1/stream` for API clients: a `read` key in `Authorization: Bearer <key>` or as the
    subprotocol `bearer.<key>`; JSON events for the whole org, or only the subscribed bots."""

    groups_joined: set[str]
    writer: asyncio.Task | None = None
    ended = False  # access ended (key revoked, ...): the socket is closing

    async def connect(self):
        self.groups_joined = set()
        started = time.monotonic()
        secret, subprotocol = _secret_from_scope(self.scope)
        api_key = await _stream_key(secret) if secret else None
        if api_key is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        watch = Watch(
            group=api_key_group(api_key.pk),
            close=self._access_ended,
            recheck=lambda: _stream_key_access(secret),
            started=started,
        )

        async def check() -> int | None:
            # The key came from the process's 2 s cache; that is fresh enough if the key's group
            # was joined before the lookup (a revocation since then cleared the cache entry).
            revoker = get_revoker()
            return await watch.recheck() if revoker.needs_fresh_check(watch) else None

        if not await _admit(self, watch, check):
            return
        await self.accept(subprotocol=subprotocol)
        self.org_id = api_key.organization_id
        self.targets: dict[tuple[str, str], int] = {}  # (kind, slug) -> id
        self.subscriber = Subscriber(on_overflow=self._too_slow, on_lost=self._live_lost)
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

    def _live_lost(self):
        asyncio.get_running_loop().create_task(self.close(code=CLOSE_TRY_LATER))

    def _access_ended(self, code: int) -> None:
        """The revoker's call: not one more event (queued ones are dropped), then close."""
        self.ended = True
        if self.writer is not None:
            self._set_groups(set())
            self.subscriber.close()
            self.writer.cancel()
        asyncio.get_running_loop().create_task(self.close(code=code))

    async def _error(self, message: str) -> None:
        await self.send(text_data=orjson.dumps({"type": "error", "error": message}).decode())

    async def receive(self, text_data=None, bytes_data=None):
        """Subscriptions add bots and campaigns (the stream then carries only theirs);
        unsubscribing the last one, or `{"action": "unsubscribe"}`, returns to the whole org."""
        if self.ended:
            return
        request = parse_subscription(text_data)
        if isinstance(request, str):
            await self._error(request)
            return
        action, kind, slug = request
        if action == "subscribe":
            pk = await _target_in_org(self.org_id, kind, slug)
            if pk is None:
                await self._error(f"No {kind} with slug {slug!r} in this organization.")
                return
            self.targets[(kind, slug)] = pk
        elif kind:
            self.targets.pop((kind, slug), None)
        else:
            self.targets.clear()
        if self.ended:
            return  # the key was revoked while the slug was looked up
        wanted = {
            stream_group(self.org_id, **{f"{k}_id": pk}) for (k, _), pk in self.targets.items()
        } or {stream_group(self.org_id)}
        self._set_groups(wanted)
        reply = {"type": f"{action}d"}
        for k in ("bot", "campaign"):
            reply[f"{k}s"] = sorted(s for (kind_, s) in self.targets if kind_ == k)
        await self.send(text_data=orjson.dumps(reply).decode())

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
