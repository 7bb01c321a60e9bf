"""Who is listening: each web process reports how many local sockets each live group has.

Every few seconds a process's hub rewrites its own hash `{prefix}:{presence}:groups:{process}`
(group -> sockets) with a short expiry and stamps itself in the zset `{prefix}:{presence}:procs`,
so a process that dies drops out within three report periods and nothing stale accumulates.
`pulse` reads the sum to render scoped fragments (one bot, one campaign) only for groups somebody
watches, and the health panel shows the org's connected viewers."""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Mapping

from django.conf import settings

from analytics.redis import get_redis

REPORT_SECONDS = 5
PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}"


# One hash tag for every presence key: a report replaces a process's hash and stamps it in the
# zset in one transaction, which on a Redis Cluster needs both keys in one slot.
def _procs_key() -> str:
    return f"{settings.LIVE_KEY_PREFIX}:{{presence}}:procs"


def _groups_key(process: str) -> str:
    return f"{settings.LIVE_KEY_PREFIX}:{{presence}}:groups:{process}"


async def report(client, groups: Mapping[str, int], process: str = PROCESS_ID) -> None:
    """Replace this process's report with `groups` (an async redis client, one round trip)."""
    now = time.time()
    key = _groups_key(process)
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    if groups:
        pipe.hset(key, mapping=dict(groups))
        pipe.expire(key, REPORT_SECONDS * 3)
    pipe.zadd(_procs_key(), {process: now})
    pipe.zremrangebyscore(_procs_key(), "-inf", now - REPORT_SECONDS * 3)
    await pipe.execute()


def group_members() -> Counter[str]:
    """Sockets per group across every live web process (as last reported, within ~5 s)."""
    client = get_redis()
    processes = client.zrangebyscore(_procs_key(), time.time() - REPORT_SECONDS * 3, "+inf")
    if not processes:
        return Counter()
    pipe = client.pipeline(transaction=False)
    for process in processes:
        pipe.hgetall(_groups_key(process.decode()))
    total: Counter[str] = Counter()
    for groups in pipe.execute():
        for group, n in groups.items():
            total[group.decode()] += int(n)
    return total


def connected_viewers(org_id: int, members: Mapping[str, int] | None = None) -> int:
    """Open dashboards of an org, whatever scope each one watches."""
    members = group_members() if members is None else members
    whole, scoped = f"org.{org_id}", f"org.{org_id}."
    return sum(n for group, n in members.items() if group == whole or group.startswith(scoped))
