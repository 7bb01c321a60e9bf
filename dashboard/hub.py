"""The per-process hub: one Redis subscription per web process, fanned out to local sockets.

`dashboard.broadcast` publishes each rendered frame once to Redis on `{prefix}:ws:{group}`. Each web
process holds one pattern subscription here and hands every frame straight to each local socket of
that group, so the cost per viewer is one write — not a channel-layer round trip, nor even a task
wake-up, per socket. A socket that stops keeping up queues a bounded number of frames and is then
closed; nobody else waits.

On a Redis Cluster the subscription is the cluster client's (redis-py's ClusterPubSub, one node
chosen by the pattern's slot): a classic PUBLISH reaches every node of a cluster, so that node
hears every frame whichever node pulse published it on. A node that fails is a lost subscription
like any other: the sockets resync and the hub subscribes again through the cluster's new map.
Sharded pub/sub (SSUBSCRIBE) has no patterns, and one group per org would mean a subscription
per org and process; classic pub/sub is kept.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine

from django.conf import settings

from analytics.redis import REDIS_FAILURES, async_redis_client
from config.outage import Outage
from dashboard import presence

log = logging.getLogger(__name__)

QUEUE_SIZE = 64  # frames a socket may fall behind before it is dropped
WIRE_BUFFER_LIMIT = (
    1 << 20
)  # bytes unsent to a socket (written straight to the wire) before it is dropped


def channel_prefix() -> str:
    return f"{settings.LIVE_KEY_PREFIX}:ws:"


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2), as a server sends it:
    the same bytes for every socket, so a frame is encoded once however many sockets get it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class TooSlow(Exception):
    """The socket's unsent bytes passed WIRE_BUFFER_LIMIT: its reader stopped keeping up."""


class WireWriter:
    """Writes ready-made frames straight to a daphne socket's transport, skipping the per-socket
    ASGI send, UTF-8 encode and autobahn framing (the bulk of a delivery's cost under daphne).
    Control frames and the consumer's own sends still go through daphne; both end in the same
    transport's ordered buffer."""

    def __init__(self, protocol) -> None:
        self.protocol = protocol

    @classmethod
    def for_send(cls, send) -> WireWriter | None:
        """The writer for the daphne socket behind an ASGI `send` (through Channels' session
        wrapper), or None for any other server (the consumer then sends as usual)."""
        try:  # here, not at the top: the hub must load (and fall back) under any ASGI server
            from daphne.ws_protocol import WebSocketProtocol
        except ImportError:  # pragma: no cover - daphne is a dependency
            return None
        for _ in range(8):
            if isinstance(send, functools.partial):
                protocol = send.args[0] if send.args else None
                return cls(protocol) if isinstance(protocol, WebSocketProtocol) else None
            send = getattr(getattr(send, "__self__", None), "real_send", None)
            if send is None:
                return None
        return None

    def unsent(self) -> int:
        """Bytes queued in the transport (Twisted's FileDescriptor buffers; 0 if unknown)."""
        transport = self.protocol.transport
        data = getattr(transport, "dataBuffer", b"")
        return len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)

    def write(self, wire: bytes) -> None:
        protocol = self.protocol
        transport = protocol.transport
        closing = transport is None or getattr(transport, "disconnecting", False)
        if protocol.state != protocol.STATE_OPEN or closing:
            raise ConnectionError("socket closed")
        unsent = self.unsent()
        if unsent > WIRE_BUFFER_LIMIT:
            raise TooSlow
        sock = getattr(transport, "socket", None)  # a plain TCP transport (not TLS)
        if unsent == 0 and sock is not None:
            # Nothing queued before it: send now, as asyncio's transports do. Through Twisted
            # every write registers the socket with the event loop and unregisters it after the
            # send on the next turn; for a frame to 1,000 sockets that is most of the cost.
            try:
                sent = sock.send(wire)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                raise ConnectionError(exc) from exc
            if sent == len(wire):
                return
            wire = wire[sent:]
        transport.write(wire)  # the rest, after whatever Twisted still holds


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
        wire: WireWriter | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.on_overflow = on_overflow
        self.on_lost = on_lost  # the hub lost Redis: no frames will come until it is back
        self.send = send
        self.wire = wire  # when set, frames go straight to the socket's transport
        self.dropped = False
        self.pending: deque[str] = deque()
        self.sending: asyncio.Task | None = None  # a send waiting on the socket
        if send is None:
            self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_SIZE)

    def offer(self, frame: str, wire: bytes | None = None) -> None:
        """Hand over one frame; `wire` is the same frame already framed (see text_frame)."""
        if self.dropped:
            return
        if self.wire is not None:
            try:
                self.wire.write(wire if wire is not None else text_frame(frame.encode()))
            except TooSlow:
                self._drop()
            except Exception as exc:
                log.debug("live frame not written (%r); the socket gets no more", exc)
                self.close()
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
        self.down = False  # lost Redis, and nobody has seen it answer since

    async def redis_ok(self) -> bool:
        """Whether live frames can flow: after a loss, asks Redis again (a socket opened while
        it is down would get nothing, so consumers refuse it and the page polls meanwhile)."""
        if not self.down:
            return True
        client = async_redis_client(
            settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            await client.ping()
        except (*REDIS_FAILURES, OSError):
            return False
        finally:
            await client.aclose()
        self.down = False
        return True

    def _lost(self) -> None:
        """Redis is gone: tell every local socket (the page then polls and reconnects)."""
        self.down = True
        for members in list(self.groups.values()):
            for subscriber in list(members):
                if subscriber.on_lost is not None:
                    subscriber.on_lost()

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
        subscribers = tuple(self.groups.get(group, ()))
        wire = None
        if any(s.wire is not None for s in subscribers):
            wire = text_frame(frame.encode())  # framed once for every socket of the group
        for subscriber in subscribers:
            subscriber.offer(frame, wire)

    async def _listen(self) -> None:
        prefix = channel_prefix()
        outage = Outage("live hub", logger=log)
        while self.groups:
            client = async_redis_client(settings.REDIS_URL)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(prefix + "*")
                    self.ready.set()
                    self.down = False
                    outage.ok()
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
            except (*REDIS_FAILURES, OSError) as exc:  # any Redis failure: the sockets resync
                if asyncio.current_task().cancelling():
                    raise asyncio.CancelledError from exc  # the loop is closing: stop (as above)
                self.ready.clear()
                self._lost()
                await outage.asleep(exc)
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
