"""The only publisher of live frames, and the per-process hub that fans them out.

Rendering happens once per org and tick (in `pulse`); a frame is published once to Redis on
`{prefix}:ws:{group}`. Each web process holds one pattern subscription and writes every frame
straight to the bounded queue of each local socket in that group, so the cost per viewer is a queue
put — not a channel-layer round trip per socket. A socket whose queue is full (a stalled client)
is closed; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import redis
import redis.asyncio as aioredis
from django.conf import settings

from analytics.redis import get_redis

log = logging.getLogger(__name__)

QUEUE_SIZE = 64  # frames a socket may fall behind before it is dropped


def _channel_prefix() -> str:
    return f"{settings.LIVE_KEY_PREFIX}:ws:"


def org_group(org_id: int) -> str:
    return f"org.{org_id}"


def stream_group(org_id: int) -> str:
    return f"stream.org.{org_id}"


def stream_bot_group(bot_id: int) -> str:
    return f"stream.bot.{bot_id}"


def publish(group: str, frame: str) -> int:
    """Publish one rendered frame to every socket of `group` in every web process."""
    return get_redis().publish(_channel_prefix() + group, frame)


class Subscriber:
    """One socket's bounded outbox; `on_overflow` closes it when the client stops reading."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.on_overflow = on_overflow
        self.dropped = False

    def offer(self, frame: str) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped = True
            self.on_overflow()


class Hub:
    """The process's single Redis subscription and the local sockets of each group."""

    def __init__(self) -> None:
        self.groups: dict[str, set[Subscriber]] = defaultdict(set)
        self.task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    def join(self, group: str, subscriber: Subscriber) -> None:
        self.groups[group].add(subscriber)
        if self.task is None or self.task.done():
            self.ready.clear()
            self.task = asyncio.get_running_loop().create_task(self._listen())

    def leave(self, group: str, subscriber: Subscriber) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self.groups[group]

    def dispatch(self, group: str, frame: str) -> None:
        for subscriber in tuple(self.groups.get(group, ())):
            subscriber.offer(frame)

    async def _listen(self) -> None:
        prefix = _channel_prefix()
        while self.groups:
            client = aioredis.Redis.from_url(settings.REDIS_URL)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(prefix + "*")
                    self.ready.set()
                    next_report = 0.0
                    while self.groups:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message and message["type"] == "pmessage":
                            group = message["channel"].decode()[len(prefix) :]
                            self.dispatch(group, message["data"].decode())
                        if time.monotonic() >= next_report:
                            next_report = time.monotonic() + VIEWER_REPORT_SECONDS
                            await self._report_viewers(client)
            except (redis.RedisError, OSError) as exc:
                self.ready.clear()
                log.warning("live hub lost Redis (%s); retrying in 1 s", exc)
                await asyncio.sleep(1)
            finally:
                await client.aclose()

    async def _report_viewers(self, client) -> None:
        """Each process reports its open dashboards per org; the health panel sums the processes."""
        pipe = client.pipeline(transaction=False)
        for group, members in self.groups.items():
            if group.startswith("org."):
                key = viewers_key(int(group[4:]))
                pipe.hset(key, PROCESS_ID, len(members))
                pipe.expire(key, VIEWER_REPORT_SECONDS * 3)
        await pipe.execute()


VIEWER_REPORT_SECONDS = 5
PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}"


def viewers_key(org_id: int) -> str:
    return f"{settings.LIVE_KEY_PREFIX}:viewers:{org_id}"


def connected_viewers(org_id: int) -> int:
    """Open dashboards of an org across web processes (as last reported, within ~5 s)."""
    return sum(int(v) for v in get_redis().hvals(viewers_key(org_id)))


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (one per web process; tests get one per loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for old in [old for old in _hubs if old.is_closed()]:
            del _hubs[old]
        hub = _hubs[loop] = Hub()
    return hub


def pulse_tick() -> int:
    """Render and publish the live fragments of every org with new data; returns how many orgs."""
    from django.template.loader import render_to_string

    from analytics.models import Organization
    from analytics.services.live import dirty_key
    from dashboard.presenters import live_context

    pipe = get_redis().pipeline(transaction=True)
    pipe.smembers(dirty_key())
    pipe.delete(dirty_key())
    members, _ = pipe.execute()
    for org in Organization.objects.filter(pk__in=[int(m) for m in members]):
        context = {**live_context(org), "oob": True}
        frame = _changed_fragments(org.pk, context, render_to_string)
        if frame:
            publish(org_group(org.pk), frame)
        _publish_stream(org, context)
    return len(members)


LIVE_FRAGMENTS = (
    "dashboard/partials/_live_metrics.html",
    "dashboard/partials/_feed_rows.html",
    "dashboard/partials/_employee_cards.html",
    "dashboard/partials/_activity_rows.html",
    "dashboard/partials/_activity_chart.html",
    "dashboard/partials/_campaign_panel.html",
    "dashboard/partials/_system_health.html",
)
_last_rendered: dict[tuple[int, str], str] = {}  # (org id, template) -> HTML last published


def _changed_fragments(org_id: int, context: dict, render) -> str:
    """Only the fragments whose HTML changed since this pulse last published them for the org:
    every byte saved here is saved once per open dashboard."""
    parts = []
    for template in LIVE_FRAGMENTS:
        html = render(template, context)
        if _last_rendered.get((org_id, template)) != html:
            _last_rendered[(org_id, template)] = html
            parts.append(html)
    return "".join(parts)


_stream_seen: dict[int, str] = {}  # org id -> timestamp of the newest event already streamed


def _publish_stream(org, context: dict) -> None:
    """JSON events for API clients: the org's metrics, then each event new since the last tick."""
    from analytics.models import Bot

    metrics = {
        "type": "metrics_update",
        "timestamp": datetime.now(UTC).isoformat(),
        "metrics": context["metrics"],
    }
    publish(stream_group(org.pk), orjson.dumps(metrics).decode())
    seen = newest = _stream_seen.get(org.pk, "")
    bot_ids = dict(Bot.objects.for_org(org).values_list("slug", "id"))
    items = [("new_message", e) for e in context["feed"] if e["kind"] == "message"]
    items += [("ai_activity", a) for a in context["activities"]]
    for kind, item in sorted(items, key=lambda pair: pair[1]["at"]):
        at = item["at"].isoformat()
        if at <= seen:
            continue
        newest = max(newest, at)
        data = {k: v for k, v in item.items() if k not in ("at", "ago", "badge", "badge_label")}
        frame = orjson.dumps({"type": kind, "timestamp": at, "data": data}).decode()
        publish(stream_group(org.pk), frame)
        if item["bot"] in bot_ids:
            publish(stream_bot_group(bot_ids[item["bot"]]), frame)
    _stream_seen[org.pk] = newest
