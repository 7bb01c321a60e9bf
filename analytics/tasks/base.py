"""The retry policy every task shares, defined once, and the decorator that applies it.

A task retries a PostgreSQL or Redis outage (config.outage.TRANSIENT) 3 times with exponential
backoff, is acknowledged only after it ran (`acks_late`; a task whose worker dies is delivered
again) and is registered under an explicit name: beat's schedules (django-celery-beat rows),
messages already queued and services (analytics.services.enqueue) refer to tasks by that name, so
it must not change when a function moves.
"""

from __future__ import annotations

from celery import shared_task

from config.outage import TRANSIENT

RETRY = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT,  # PostgreSQL or Redis unreachable: try again later
    "max_retries": 3,
    "retry_backoff": 5,  # 5 s, 10 s, 20 s (with jitter)
    "retry_backoff_max": 300,
    "retry_jitter": True,
}


def retried_task(name: str, **options):
    """A task registered as `name` with the shared retry policy (RETRY) and its own `options`."""
    return shared_task(name=name, **RETRY, **options)
