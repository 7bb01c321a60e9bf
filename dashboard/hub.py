"""The per-process hub: one Redis subscription per web process, fanned out to local sockets.

`dashboard.broadcast` publishes each rendered frame once to Redis on `{prefix}:ws:{group}`. Each web
process holds one pattern subscription here and hands every frame straight to each local socket of
that group, so the cost per viewer is one write — not a channel-layer round trip, nor even a task
wake-up, per socket. A socket that stops keeping up queues a bounded number of frames and is then
closed; nobody else waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine

import redis
import redis.asyncio as aioredis
from django.conf import settings

from dashboard import presence

log = logging.getLogger(__name__)

QUEUE_SIZE = 64  # frames a socket may fall behind before it is dropped


def channel_prefix() -> str:
    return f"{settings.LIVE_KEY_PREFIX}:ws:"


class Subscriber:
    """One socket's outbox. With `send` (an async function writing one frame to the socket), a
    frame is written at once — the send is stepped in place, so a server whose send completes
    without waiting (daphne's does) costs no task and no queue per socket and frame. A send that
    does wait (back-pressure) finishes in a task of its own while up to QUEUE_SIZE frames queue
    behind it; one more and `on_overflow` closes the socket. Without `send`, frames go to the
    bounded `queue` for the consumer's own writer task (same drop rule)."""

    def __init__(
        self,
        on_overflow: Callable[[], None],
        send: Callable[[str], Coroutine[object, object, None]] | None = None,
    ) -> None:
        self.on_overflow = on_overflow
        self.send = send
        self.dropped = False
        self.pending: deque[str] = deque()
        self.sending: asyncio.Task | None = None  # a send waiting on the socket
        if send is None:
            self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_SIZE)

    def offer(self, frame: str) -> None:
        if self.dropped:
            return
        if self.send is None:
            try:
                self.queue.put_nowait(frame)
            except asyncio.QueueFull:
                self._drop()
            return
        if self.sending is not None:
            if len(self.pending) >= QUEUE_SIZE:
                self._drop()
            else:
                self.pending.append(frame)
            return
        coroutine = self.send(frame)
        try:
            waiting_on = coroutine.send(None)
        except StopIteration:
            return  # written
        except Exception as exc:
            # Typically a socket that closed a moment ago; its disconnect() is on its way.
            log.debug("live frame not written (%r); the socket gets no more", exc)
            self.close()
            return
        self.sending = asyncio.get_running_loop().create_task(self._finish(coroutine, waiting_on))

    async def _finish(self, coroutine: Coroutine, waiting_on: Awaitable | None) -> None:
        try:
            await _resume(coroutine, waiting_on)
            while self.pending and not self.dropped:
                await self.send(self.pending.popleft())
        except Exception as exc:
            log.debug("live frame not written (%r); the socket gets no more", exc)
            self.close()
        finally:
            self.sending = None

    def _drop(self) -> None:
        self.dropped = True
        self.pending.clear()
        self.on_overflow()

    def close(self) -> None:
        """Stop writing (the socket is gone): nothing queued is sent."""
        self.dropped = True
        self.pending.clear()
        if self.sending is not None and self.sending is not asyncio.current_task():
            self.sending.cancel()


async def _resume(coroutine: Coroutine, waiting_on: Awaitable | None) -> None:
    """Run a coroutine stepped by hand (Subscriber.offer) to its end, as a Task would have: wait
    for what it waits on, then step it again."""
    try:
        while True:
            if waiting_on is None:
                await asyncio.sleep(0)  # a bare yield
            else:
                await asyncio.wait((waiting_on,))
            waiting_on = coroutine.send(None)
    except StopIteration:
        return
    except asyncio.CancelledError:
        if isinstance(waiting_on, asyncio.Future):
            waiting_on.cancel()
        coroutine.close()
        raise


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
                    # The last socket left: say so now, not when the last report expires.
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
