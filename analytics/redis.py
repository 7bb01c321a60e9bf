"""One Redis client per process for live state (rebuildable; PostgreSQL is the source of truth)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


def get_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)


def get_redis_probe() -> redis.Redis:
    """A client for health checks: a Redis that does not answer within a second counts as down
    (the usual client waits up to 3 s to connect and 5 s to read)."""
    return _probe(settings.REDIS_URL)


@functools.cache
def _probe(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def redis_ping() -> str:
    try:
        get_redis().ping()
    except redis.RedisError as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"
