"""The Celery application: `celery -A config worker` / `celery -A config beat`."""

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


def _best_effort(record, **kwargs) -> None:
    """Bookkeeping never fails a task (Redis may be down while PostgreSQL work succeeds)."""
    try:
        record(**kwargs)
    except Exception:  # noqa: BLE001
        logging.getLogger(__name__).warning("task bookkeeping failed", exc_info=True)
