"""Celery signal handlers: every task's start, end and outcome, and the worker's heartbeat.

They record into analytics.services.ops (read by /metrics, /healthz and the ops API) and are
connected by `connect()`, called from AnalyticsConfig.ready(), so every process that sets up
Django (web, worker, pulse, tests) has them.
"""

from __future__ import annotations

import functools
import logging
import time

from celery import signals
from django.conf import settings

from analytics.redis import redis_client
from analytics.services.ops import (
    ops_task_finished,
    ops_task_started,
    ops_worker_heartbeat,
    ops_workers_forget,
)

log = logging.getLogger(__name__)

_started: dict[str, float] = {}


def _task_started(task_id=None, task=None, **_):
    _started[task_id] = time.monotonic()
    _best_effort(ops_task_started, task_id=task_id, name=task.name)


def _task_finished(task_id=None, task=None, state=None, **_):
    started = _started.pop(task_id, None)
    seconds = time.monotonic() - started if started is not None else None
    outcome = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}.get(state, state)
    _best_effort(
        ops_task_finished,
        task_id=task_id,
        name=task.name,
        state=str(outcome).lower(),
        seconds=seconds,
    )


# The worker's heartbeat, for /healthz and /metrics. Celery's own heartbeat timer runs every 2 s
# in the worker's consumer loop, the loop that takes tasks off the broker: it stops when the
# worker dies, hangs, or loses the broker, and keeps going while pool processes run long tasks.
# A beat-scheduled task would instead also go quiet whenever beat is down or a queue is backed
# up; a thread of our own would keep beating inside a stuck worker.
_HEARTBEAT_RETRY_SECONDS = 10.0  # after a failed stamp (live Redis away), try again this late
_heartbeat = {"retry_at": 0.0, "failing": False}


@functools.cache
def _heartbeat_redis():
    """Short timeouts: this runs in the consumer loop, which must not wait on a lost Redis."""
    return redis_client(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


def _worker_heartbeat(sender=None, **_):
    if time.monotonic() < _heartbeat["retry_at"]:
        return
    try:
        ops_worker_heartbeat(
            worker=sender.eventer.hostname, at=time.time(), client=_heartbeat_redis()
        )
    except Exception as exc:  # noqa: BLE001 - bookkeeping never stops the worker
        _heartbeat["retry_at"] = time.monotonic() + _HEARTBEAT_RETRY_SECONDS
        if not _heartbeat["failing"]:
            log.warning("worker heartbeat not recorded (%r)", exc)
        _heartbeat["failing"] = True
    else:
        if _heartbeat["failing"]:
            log.info("worker heartbeat recorded again")
        _heartbeat["failing"] = False


def _forget_old_workers(**_):
    _best_effort(ops_workers_forget, older_than=86400)


def _best_effort(record, **kwargs) -> None:
    """Bookkeeping never fails a task (Redis may be down while PostgreSQL work succeeds)."""
    try:
        record(**kwargs)
    except Exception:  # noqa: BLE001
        log.warning("task bookkeeping failed", exc_info=True)


def connect() -> None:
    """Connect the handlers (once: each has a dispatch uid)."""
    for signal, handler in (
        (signals.task_prerun, _task_started),
        (signals.task_postrun, _task_finished),
        (signals.heartbeat_sent, _worker_heartbeat),
        (signals.worker_ready, _forget_old_workers),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"analytics.{handler.__name__}")
