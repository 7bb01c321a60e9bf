"""Access ends when it should: the open sockets of a session, user or API key are closed, on every
web process, as soon as that access is revoked (logout, membership removed, key revoked, ...).

A revocation sends one `force_disconnect` message, after its transaction commits, to the channel
layer group `user.<id>` or `apikey.<id>`. Each web process has one Revoker with one channel-layer
channel: it joins a group while at least one local socket belongs to it (so a burst of sockets of
one user costs one `group_add`, not one per socket) and closes the matching local sockets when a
message arrives. None of this is on the frame path: the hub (dashboard.hub) is untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis
from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers, get_channel_layer
from django.db import transaction

from analytics.api.auth import forget_api_key

log = logging.getLogger(__name__)

CLOSE_AUTH_ENDED = 4401  # signed out, session deleted, user deactivated or deleted, key revoked
CLOSE_NOT_ALLOWED = 4403  # no longer a member of the org (or the key lost its `read` scope)
REJOIN_SECONDS = 3600  # the layer forgets group members after a day (group_expiry); rejoin hourly
RECENT_SECONDS = 30  # how long a received revocation still applies to sockets mid-handshake


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def api_key_group(api_key_id: int) -> str:
    return f"apikey.{api_key_id}"


def session_tag(session_key: str | None) -> str | None:
    """What a message names a session by: a hash, so no session key travels through Redis."""
    if not session_key:
        return None
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


def access_end(
    *,
    group: str,
    code: int,
    session: str | None = None,
    org_id: int | None = None,
    recheck: bool = False,
) -> None:
    """Close the sockets of `group` (only those of `session` / of `org_id` when given) with
    `code` on every web process, once the current transaction commits. With `recheck`, each
    socket checks its access again and is closed only if that check now fails."""
    message = {
        "type": "force_disconnect",
        "group": group,
        "code": code,
        "session": session,
        "org": org_id,
        "recheck": recheck,
    }
    transaction.on_commit(lambda: _send(group, message))


def _send(group: str, message: dict) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _send_now(group, message)
        return
    # Sync code on an event loop's thread (DJANGO_ALLOW_ASYNC_UNSAFE, a shell inside a loop):
    # async_to_sync cannot run here, so the send gets a thread of its own.
    sender = threading.Thread(target=_send_now, args=(group, message), daemon=True)
    sender.start()
    sender.join(5)


def _send_now(group: str, message: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, message)
    except (redis.RedisError, OSError) as exc:
        # Redis down: every hub closes its sockets (4013) and refuses new ones until it is back,
        # and a socket that connects again is authenticated afresh.
        log.warning("could not send force_disconnect to %s (%s)", group, exc)


@dataclass(eq=False)
class Watch:
    """One local socket as the revoker knows it."""

    group: str
    close: Callable[[int], None]  # ends the socket with this close code
    session: str | None = None  # session_tag of the socket's session (dashboard sockets)
    org_id: int | None = None
    # Checks the socket's access afresh: None if it still holds, else the close code.
    recheck: Callable[[], Awaitable[int | None]] | None = None
    started: float = field(default_factory=time.monotonic)  # before its access was checked

    def matches(self, message: dict) -> bool:
        if message.get("session") and message["session"] != self.session:
            return False
        return message.get("org") is None or message["org"] == self.org_id


class Revoker:
    """The process's channel-layer channel, the groups it joined and the local sockets of each."""

    def __init__(self) -> None:
        self.watches: dict[str, set[Watch]] = defaultdict(set)
        self.joined: dict[str, float] = {}  # group -> when the layer confirmed the join
        self.locks: dict[str, asyncio.Lock] = {}
        self.recent: deque[tuple[float, dict]] = deque()  # revocations received lately
        self.channel: str | None = None
        self.task: asyncio.Task | None = None
        # A layer instance of its own: channels-redis keeps receive state (locks, buffers) per
        # instance and per event loop, so this one never shares it with other code or loops.
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)

    async def watch(self, watch: Watch) -> None:
        """Register a socket (before it is accepted); returns once a revocation sent from now
        on reaches it. Raises redis errors if the layer cannot be reached."""
        if self.channel is None:
            self.channel = await self.layer.new_channel("revoker")
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._listen())
        self.watches[watch.group].add(watch)
        if watch.group not in self.joined:
            try:
                await self._reconcile(watch.group)
            except BaseException:
                self.unwatch(watch)
                raise

    def needs_fresh_check(self, watch: Watch) -> bool:
        """Whether a revocation may have passed this socket by: its group was joined only after
        the socket's access was checked (a message sent in between reached nobody here)."""
        joined_at = self.joined.get(watch.group)
        return joined_at is None or joined_at > watch.started

    def missed(self, watch: Watch) -> dict | None:
        """A revocation of this socket that arrived while it was being set up."""
        for received, message in self.recent:
            if (
                received >= watch.started
                and message["group"] == watch.group
                and watch.matches(message)
            ):
                return message
        return None

    def unwatch(self, watch: Watch) -> None:
        members = self.watches.get(watch.group)
        if members is None or watch not in members:
            return
        members.discard(watch)
        if not members:
            del self.watches[watch.group]
            loop = asyncio.get_running_loop()
            if not loop.is_closed():
                loop.create_task(self._reconcile(watch.group))

    async def _reconcile(self, group: str) -> None:
        """Join or leave `group` to match whether any local socket belongs to it (one at a time
        per group, so a leave never overtakes the join that follows it)."""
        lock = self.locks.setdefault(group, asyncio.Lock())
        layer = self.layer
        try:
            async with lock:
                if group in self.watches and group not in self.joined:
                    await layer.group_add(group, self.channel)
                    self.joined[group] = time.monotonic()
                elif group not in self.watches and group in self.joined:
                    del self.joined[group]
                    await layer.group_discard(group, self.channel)
        except (redis.RedisError, OSError) as exc:
            if group in self.watches:
                raise
            log.debug("revoker could not leave %s (%s); the layer expires it", group, exc)
        finally:
            if group not in self.watches and not lock.locked() and not lock._waiters:
                self.locks.pop(group, None)

    async def _listen(self) -> None:
        rejoin_at = time.monotonic() + REJOIN_SECONDS
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception as exc:  # never stop listening: revocations would be lost
                if asyncio.current_task().cancelling():
                    # Being cancelled (the loop is closing), whatever the layer turned the
                    # cancellation into: stop, or the loop waits for this task for ever.
                    raise asyncio.CancelledError from exc
                log.warning("revoker could not receive (%r); retrying in 1 s", exc)
                await asyncio.sleep(1)
                rejoin_at = 0.0  # Redis may have restarted empty
                message = None
            if message is not None and message.get("type") == "force_disconnect":
                self._force_disconnect(message)
            if time.monotonic() >= rejoin_at:
                rejoin_at = time.monotonic() + REJOIN_SECONDS
                await self._rejoin()

    async def _rejoin(self) -> None:
        for group in list(self.joined):
            try:
                await self.layer.group_add(group, self.channel)
            except (redis.RedisError, OSError) as exc:
                log.warning("revoker could not rejoin %s (%s)", group, exc)
                return

    def _force_disconnect(self, message: dict) -> None:
        now = time.monotonic()
        self.recent.append((now, message))
        while self.recent and self.recent[0][0] < now - RECENT_SECONDS:
            self.recent.popleft()
        if message["group"].startswith("apikey."):
            forget_api_key(int(message["group"].split(".", 1)[1]))
        for watch in list(self.watches.get(message["group"], ())):
            if not watch.matches(message):
                continue
            if message.get("recheck") and watch.recheck is not None:
                asyncio.get_running_loop().create_task(self._recheck(watch))
            else:
                self.end(watch, message["code"])

    async def _recheck(self, watch: Watch) -> None:
        try:
            code = await watch.recheck()
        except Exception:
            log.exception("access re-check failed; closing the socket")
            code = CLOSE_AUTH_ENDED
        if code is not None:
            self.end(watch, code)

    def end(self, watch: Watch, code: int) -> None:
        self.unwatch(watch)
        watch.close(code)


_revokers: dict[asyncio.AbstractEventLoop, Revoker] = {}


def get_revoker() -> Revoker:
    """The revoker of the running event loop (one per web process; tests get one per loop)."""
    loop = asyncio.get_running_loop()
    revoker = _revokers.get(loop)
    if revoker is None:
        for old in [old for old in _revokers if old.is_closed()]:
            del _revokers[old]
        revoker = _revokers[loop] = Revoker()
    return revoker
