"""Queue a Celery task by its registered name: services never import the task modules.

The names are the ones the tasks are registered under (analytics/tasks/); a test checks that
each one below is a registered task. The task is looked up by name in Celery's registry, so it is
sent with the options it is declared with (expiry, time limits), exactly as its own apply_async
would: analytics.apps registers the tasks in every process that sets up Django.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import current_app
from django.db import transaction

CONVERSATION_METRICS_ON_END = "analytics.tasks.conversation_metrics_on_end"
CONVERSATION_METRICS_BUILD = "analytics.tasks.conversation_metrics_build_task"
ROLLUP_BUILD_HOURLY = "analytics.tasks.rollup_build_hourly_task"
ROLLUP_BUILD_DAILY = "analytics.tasks.rollup_build_daily_task"
ALERT_NOTIFICATION_DELIVER = "analytics.alert_tasks.alert_notification_deliver_task"
INSIGHTS_REFRESH = "analytics.alert_tasks.insights_refresh_task"
EXPORT_BUILD = "analytics.export_build"


def task_send(name: str, *, args: Sequence = (), **options) -> None:
    """Send task `name` now; a broker that cannot be reached raises here.

    Through the registry, not `send_task`: `send_task` would skip the task's declared options
    while the app is not finalized yet, and ignores eager mode (which the export tests use).
    """
    current_app.tasks[name].apply_async(args=list(args), **options)


def task_send_on_commit(name: str, *, args: Sequence = (), **options) -> None:
    """Send task `name` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: task_send(name, args=args, **options))
