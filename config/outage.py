"""Riding out an outage of PostgreSQL or Redis: the one helper every long-running loop uses.

A loop (pulse, each web process's live hub, the simulator) catches `TRANSIENT` errors only, and
hands them to its `Outage`: the first failure logs one WARNING, the waits between retries double
from 0.5 s to 5 s, and the first success afterwards logs one INFO with the outage's duration — not
a traceback per tick. Anything else (a bug) still ends the loop, loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

import psycopg
import psycopg_pool
import redis
from django.db import InterfaceError, OperationalError, connections

# What a database or Redis outage raises: Django's wrapped errors, psycopg's own (a pool used
# directly; psycopg_pool.PoolTimeout is one of them), and redis-py's connection failures.
DATABASE_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
)
REDIS_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    # a Redis Cluster between a master's loss and its replica's promotion
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterUnreachableError,
    redis.exceptions.SlotNotCoveredError,
)
TRANSIENT = DATABASE_ERRORS + REDIS_ERRORS

FIRST_WAIT = 0.5
MAX_WAIT = 5.0


def describe(exc: BaseException) -> str:
    """Which service failed and how, in one line (no traceback)."""
    text = str(exc).strip()
    detail = f"{exc.__class__.__name__}: {text.splitlines()[0]}" if text else exc.__class__.__name__
    if isinstance(exc, REDIS_ERRORS):
        return f"Redis unavailable ({detail})"
    if isinstance(exc, DATABASE_ERRORS):
        return f"PostgreSQL unavailable ({detail})"
    return detail


class Outage:
    """The state of one loop's outage: logs its start and end once each, and says how long to
    wait before the next attempt."""

    def __init__(
        self,
        name: str,
        *,
        logger: logging.Logger | None = None,
        first: float = FIRST_WAIT,
        cap: float = MAX_WAIT,
    ) -> None:
        self.name = name
        self.log = logger or logging.getLogger(__name__)
        self.first, self.cap = first, cap
        self.since: float | None = None  # monotonic time of the first failure, while down
        self.wait = first
        self.failures = 0
        self.lock = threading.Lock()  # a web process notes failures from many request threads

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failure; returns the seconds to wait before retrying (0.5, 1, 2, 4, 5, 5 …)."""
        if isinstance(exc, DATABASE_ERRORS):
            drop_database_connections()
        with self.lock:
            self.failures += 1
            if self.since is None:
                self.since = time.monotonic()
                self.wait = self.first
                self.log.warning(
                    "%s: %s; retrying with backoff up to %g s", self.name, describe(exc), self.cap
                )
            else:
                self.wait = min(self.cap, self.wait * 2)
            return self.wait

    def ok(self) -> bool:
        """Note a success; True when it ends an outage (logged once, with its duration)."""
        if self.since is None:
            return False
        with self.lock:
            if self.since is None:
                return False  # another thread noted it first
            seconds = time.monotonic() - self.since
            self.log.info(
                "%s: recovered after %.1f s (%d failed attempts)", self.name, seconds, self.failures
            )
            self.since, self.wait, self.failures = None, self.first, 0
            return True

    def sleep(self, exc: BaseException) -> None:
        time.sleep(self.failed(exc))

    async def asleep(self, exc: BaseException) -> None:
        await asyncio.sleep(self.failed(exc))


def drop_database_connections() -> None:
    """Give back this thread's database connections after an error: a broken one is discarded
    (the pool checks each connection it hands out), so the next query starts on a fresh one."""
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(*DATABASE_ERRORS):  # already gone; Django forgets it either way
            conn.close()
