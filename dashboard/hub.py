"""The per-process hub: one Redis subscription per web process, fanned out to local sockets.

`dashboard.broadcast` publishes each rendered frame once to Redis on `{prefix}:ws:{group}`. Each web
process holds one pattern subscription here and writes every frame straight to the bounded queue of
each local socket in that group, so the cost per viewer is a queue put — not a channel-layer round
trip per socket. A socket whose queue is full (a stalled client) is closed; nobody else waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from django.conf import settings

from analytics.redis import get_redis

log = logging.getLogger(__name__)

QUEUE_SIZE = 64  # frames a socket may fall behind before it is dropped


def channel_prefix() -> str:
    return f"{settings.LIVE_KEY_PREFIX}:ws:"


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
        prefix = channel_prefix()
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
