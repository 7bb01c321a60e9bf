"""The per-process hub: one Redis subscription per web process, fanned out to local sockets.

`dashboard.broadcast` publishes each rendered frame once to Redis on `{prefix}:ws:{group}`. Each web
process holds one pattern subscription here and writes every frame straight to the bounded queue of
each local socket in that group, so the cost per viewer is a queue put — not a channel-layer round
trip per socket. A socket whose queue is full (a stalled client) is closed; nobody else waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from django.conf import settings

from dashboard import presence

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
        self.report_due = True  # a new group is reported at once, so pulse starts rendering it

    def join(self, group: str, subscriber: Subscriber) -> None:
        if group not in self.groups:
            self.report_due = True
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
                        if self.report_due or time.monotonic() >= next_report:
                            self.report_due = False
                            next_report = time.monotonic() + presence.REPORT_SECONDS
                            await self._report_viewers(client)
            except (redis.RedisError, OSError) as exc:
                self.ready.clear()
                log.warning("live hub lost Redis (%s); retrying in 1 s", exc)
                await asyncio.sleep(1)
            finally:
                await client.aclose()

    async def _report_viewers(self, client) -> None:
        """Tell the other processes (pulse, the health panel) how many sockets each group has."""
        await presence.report(client, {group: len(m) for group, m in self.groups.items()})


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
