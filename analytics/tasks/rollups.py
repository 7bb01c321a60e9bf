"""Rollup tasks: thin wrappers that take ids and ISO times and delegate to the rollup services.

Every task has the shared retry policy (analytics.tasks.base), expires so a backlog does not pile
up duplicate runs (the dirty marks make the next run redo anything skipped), and is rate-limited
per worker. Queues (settings.CELERY_TASK_ROUTES): `rollups` for rollups, `followups` for work
right after ingestion.

Each rollup kind stamps its last success (analytics.services.ops, exported by /metrics) when a
build commits or its dispatcher finds nothing due, so an alert fires when a kind stops keeping up
but not when an idle product has nothing to roll up.
"""

from __future__ import annotations

from datetime import date, datetime

from analytics.services import rollup
from analytics.services.backfill import backfill_unit_done
from analytics.services.ops import ops_rollup_succeeded
from analytics.tasks.base import retried_task


@retried_task(
    "analytics.tasks.rollup_build_hourly_task",
    expires=55 * 60,
    rate_limit="20/s",
    soft_time_limit=600,
    time_limit=660,
)
def rollup_build_hourly_task(self, org_id: int, hour: str, backfill_id: int | None = None) -> dict:
    """Rebuild one org-hour (`hour` is an ISO UTC hour)."""
    result = rollup.rollup_build_hourly(org_id=org_id, hour=datetime.fromisoformat(hour))
    if backfill_id is not None:
        backfill_unit_done(backfill_id=backfill_id, unit=f"h:{hour}")
    ops_rollup_succeeded(kind="hourly")
    return {"bots": result.bots, "written": result.written, "removed": result.removed}


@retried_task(
    "analytics.tasks.rollup_build_daily_task",
    expires=23 * 3600,
    rate_limit="5/s",
    soft_time_limit=1800,
    time_limit=1900,
)
def rollup_build_daily_task(self, org_id: int, day: str, backfill_id: int | None = None) -> dict:
    """Rebuild the daily bot metrics of one org-local day (`day` is an ISO date)."""
    result = rollup.rollup_build_daily(org_id=org_id, date=date.fromisoformat(day))
    if backfill_id is not None:
        backfill_unit_done(backfill_id=backfill_id, unit=f"d:{day}")
    ops_rollup_succeeded(kind="daily")
    return {"bots": result.bots, "written": result.written, "hours": result.hours}


@retried_task(
    "analytics.tasks.rollup_hourly_dispatch",
    expires=50 * 60,
    rate_limit="1/s",
    soft_time_limit=300,
    time_limit=330,
)
def rollup_hourly_dispatch(self) -> int:
    """Beat, hourly at :05: queue a rebuild of every complete hour marked dirty (any org)."""
    due = rollup.rollup_due_hours()
    for org_id, hour in due:
        rollup_build_hourly_task.apply_async(args=[org_id, hour.isoformat()])
    if not due:
        ops_rollup_succeeded(kind="hourly")
    return len(due)


@retried_task(
    "analytics.tasks.rollup_daily_dispatch",
    expires=50 * 60,
    rate_limit="1/s",
    soft_time_limit=300,
    time_limit=330,
)
def rollup_daily_dispatch(self) -> int:
    """Beat, hourly at :00: queue the daily metrics of every marked day that is due (01:00 org
    time of the next day has passed), so each org's day is built at 01:00 in its time zone."""
    due = rollup.rollup_due_days()
    for org_id, day in due:
        rollup_build_daily_task.apply_async(args=[org_id, day.isoformat()])
    if not due:
        ops_rollup_succeeded(kind="daily")
    return len(due)


@retried_task(
    "analytics.tasks.conversation_metrics_on_end",
    expires=3600,
    rate_limit="50/s",
    soft_time_limit=120,
    time_limit=150,
)
def conversation_metrics_on_end(self, org_id: int, conversation_ids: list[int]) -> int:
    """Queued by ingestion after a batch that ended conversations (or touched ended ones)."""
    written = rollup.conversation_metrics_build_many(
        org_id=org_id, conversation_ids=conversation_ids
    )
    ops_rollup_succeeded(kind="conversation_metrics")
    return written


@retried_task(
    "analytics.tasks.conversation_metrics_build_task",
    expires=3600,
    rate_limit="5/s",
    soft_time_limit=1800,
    time_limit=1900,
)
def conversation_metrics_build_task(
    self, org_id: int, conversation_ids: list[int], backfill_id: int | None = None, unit: str = ""
) -> int:
    """Rebuild the metrics of some conversations of an org (backfill and sweep chunks)."""
    written = rollup.conversation_metrics_build_many(
        org_id=org_id, conversation_ids=conversation_ids
    )
    if backfill_id is not None and unit:
        backfill_unit_done(backfill_id=backfill_id, unit=unit)
    ops_rollup_succeeded(kind="conversation_metrics")
    return written


@retried_task(
    "analytics.tasks.conversation_metrics_sweep",
    expires=9 * 60,
    rate_limit="1/s",
    soft_time_limit=540,
    time_limit=570,
)
def conversation_metrics_sweep(self) -> int:
    """Beat, every 10 minutes: metrics of conversations that ended without their task running,
    and of long-running conversations that are still active."""
    written = rollup.conversation_metrics_sweep()
    ops_rollup_succeeded(kind="conversation_metrics")
    return written
