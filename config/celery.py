"""The Celery application: `celery -A config worker` / `celery -A config beat`."""

import functools
import logging
import os
import time

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("botflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Every task's start, end and outcome, for /metrics and the ops API (analytics.services.ops).
_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id=None, task=None, **_):
    from analytics.services.ops import ops_task_started

    _started[task_id] = time.monotonic()
    _best_effort(ops_task_started, task_id=task_id, name=task.name)


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_):
    from analytics.services.ops import ops_task_finished

    started = _started.pop(task_id, None)
    seconds = time.monotonic() - started if started is not None else None
    outcome = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}.get(state, state)
    _best_effort(ops_task_finished, task_id=task_id, name=task.name, state=str(outcome).lower(),
                 seconds=seconds)  # fmt: skip


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
    import redis  # only the worker process needs it here
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


@signals.heartbeat_sent.connect
def _worker_heartbeat(sender=None, **_):
    from analytics.services.ops import ops_worker_heartbeat

    if time.monotonic() < _heartbeat["retry_at"]:
        return
    try:
        ops_worker_heartbeat(worker=sender.eventer.hostname, at=time.time(),
                             client=_heartbeat_redis())  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - bookkeeping never stops the worker
        _heartbeat["retry_at"] = time.monotonic() + _HEARTBEAT_RETRY_SECONDS
        if not _heartbeat["failing"]:
            logging.getLogger(__name__).warning("worker heartbeat not recorded (%r)", exc)
        _heartbeat["failing"] = True
    else:
        if _heartbeat["failing"]:
            logging.getLogger(__name__).info("worker heartbeat recorded again")
        _heartbeat["failing"] = False


@signals.worker_ready.connect
def _forget_old_workers(**_):
    from analytics.services.ops import ops_workers_forget

    _best_effort(ops_workers_forget, older_than=86400)


def _best_effort(record, **kwargs) -> None:
    """Bookkeeping never fails a task (Redis may be down while PostgreSQL work succeeds)."""
    try:
        record(**kwargs)
    except Exception:  # noqa: BLE001
        logging.getLogger(__name__).warning("task bookkeeping failed", exc_info=True)
