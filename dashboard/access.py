"""Who a socket belongs to, in as few queries as a burst of connects can afford.

A dashboard socket costs two queries: its session row, then one query for the member — user,
membership, org and whether the session row still exists, together. The same check serves the
connect and every later re-check (a role change, a password change). It says what Django's
`auth.get_user()` plus `analytics.tenancy.get_org_for_user()` would, without their four queries.
Sessions live in the database (Django's default engine, which this product keeps).

A burst of connects (a deploy, 1,000 dashboards reconnecting at once) shares its lookups: `Batch`
runs every lookup asked for while the previous batch was in flight in one worker-thread call, on
one pooled connection (one checkout and health check, not one per socket), and asks each distinct
key once. Every answer is still read after it was asked for, so no revocation is missed.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from analytics.models import Membership
from analytics.roles import role_allows
from dashboard.revocation import CLOSE_AUTH_ENDED, CLOSE_NOT_ALLOWED


@dataclass(frozen=True)
class SessionUser:
    """What a session row says: whose it is and the password hash it was signed in with."""

    session_key: str
    user_id: int
    auth_hash: str


def session_user(session_key: str | None) -> SessionUser | None:
    """The signed-in user of this session (one query), or None for no or an anonymous session."""
    if not session_key:
        return None
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
    try:
        user_id = int(data[SESSION_KEY])
        backend = data[BACKEND_SESSION_KEY]
    except (KeyError, TypeError, ValueError):
        return None
    if backend not in settings.AUTHENTICATION_BACKENDS:
        return None
    return SessionUser(session_key, user_id, data.get(HASH_SESSION_KEY) or "")


def member_access(
    who: SessionUser, org_slug: str, perm: str = "org.view"
) -> tuple[int | None, int | None]:
    """(the org's id, None) while the session still signs in an active member of the org whose
    role holds `perm`; (None, the close code) otherwise. One query."""
    membership = Membership.objects.filter(user=OuterRef("pk"), organization__slug=org_slug)
    session_alive = Session.objects.filter(
        session_key=who.session_key, expire_date__gt=timezone.now()
    )
    user = (
        get_user_model()
        .objects.filter(pk=who.user_id)
        .annotate(
            session_alive=Exists(session_alive),
            role=Subquery(membership.values("role")[:1]),
            org_id=Subquery(membership.values("organization_id")[:1]),
        )
        .first()
    )
    if user is None or not user.session_alive or not user.is_active:
        return None, CLOSE_AUTH_ENDED
    if not _hash_matches(user, who.auth_hash):
        return None, CLOSE_AUTH_ENDED  # the password changed since this session signed in
    if user.org_id is None or not role_allows(user.role, perm):
        return None, CLOSE_NOT_ALLOWED
    return user.org_id, None


def _hash_matches(user, auth_hash: str) -> bool:
    """Django's session verification: the current secret's hash, or a fallback secret's."""
    if not auth_hash:
        return False
    if constant_time_compare(auth_hash, user.get_session_auth_hash()):
        return True
    return any(
        constant_time_compare(auth_hash, fallback)
        for fallback in user.get_session_auth_fallback_hash()
    )


class Batch:
    """`await batch(key)` is `lookup(key)`, run in a worker thread together with every other
    lookup asked for on this event loop while the previous batch ran (at most `limit` a call)."""

    def __init__(self, lookup: Callable[..., Any], limit: int = 200) -> None:
        self.lookup, self.limit = lookup, limit
        # Not thread-sensitive: the process's one shared sync thread would queue every socket's
        # check behind every other's; the executor's threads share the connection pool.
        self._run = database_sync_to_async(self._lookup_all, thread_sensitive=False)
        self._waiting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict] = (
            weakref.WeakKeyDictionary()
        )
        self._drains: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, *key: Hashable) -> Any:
        loop = asyncio.get_running_loop()
        waiting = self._waiting.setdefault(loop, {})
        future = waiting.get(key)
        if future is None:
            future = waiting[key] = loop.create_future()
        drain = self._drains.get(loop)
        if drain is None or drain.done():
            self._drains[loop] = loop.create_task(self._drain(waiting))
        # Shielded: a socket that goes away mid-check must not cancel the answer others share.
        return await asyncio.shield(future)

    async def _drain(self, waiting: dict) -> None:
        try:
            await self._answer(waiting)
        finally:  # a finished task holds its loop: let a closed test loop go
            self._drains.pop(asyncio.get_running_loop(), None)

    async def _answer(self, waiting: dict) -> None:
        while waiting:
            keys = list(waiting)[: self.limit]
            futures = [waiting.pop(key) for key in keys]
            try:
                answers = await self._run(keys)
            except asyncio.CancelledError:
                for future in futures:
                    future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - every waiter of the batch gets the failure
                answers = [(None, exc)] * len(keys)
            for future, (value, error) in zip(futures, answers, strict=True):
                if future.done():
                    continue
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(error)

    def _lookup_all(self, keys: list[tuple]) -> list[tuple[Any, Exception | None]]:
        answers = []
        for key in keys:
            try:
                answers.append((self.lookup(*key), None))
            except Exception as exc:  # noqa: BLE001 - handed to that key's waiter
                answers.append((None, exc))
        return answers
