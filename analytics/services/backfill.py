"""Backfill: rebuild every rollup of an org over a date range, resumably.

A run is recorded as a RollupBackfill with one RollupBackfillUnit per finished unit, so running
the same command again after an interruption skips what is done. Units: `h:<UTC hour>` (hourly
bot rollups and org usage), `d:<date>` (daily bot metrics), `c:<date>` (metrics of the
conversations started that day). Only complete hours and days are built.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.db import connection
from django.utils import timezone

from analytics.models import Organization, RollupBackfill, RollupBackfillUnit
from analytics.services.enqueue import (
    CONVERSATION_METRICS_BUILD,
    ROLLUP_BUILD_DAILY,
    ROLLUP_BUILD_HOURLY,
    task_send_on_commit,
)
from analytics.services.rollup import (
    conversation_ids_in_range,
    conversation_metrics_build_many,
    rollup_build_daily,
    rollup_build_hourly,
)
from analytics.timeutil import HOUR, floor_hour, org_day_bounds


def backfill_units(
    *, org: Organization, since: date, until: date, now: datetime | None = None
) -> list[str]:
    """Every unit of the range [since, until] (org-local dates), in build order."""
    now = now or timezone.now()
    # UTC hours covering the local days (zones like Asia/Kolkata start days at half past)
    start = floor_hour(org_day_bounds(org, since)[0])
    end = org_day_bounds(org, until)[1]
    end = min(floor_hour(end) + (HOUR if end != floor_hour(end) else timedelta(0)), floor_hour(now))
    hours, h = [], start
    while h < end:
        hours.append(f"h:{h.isoformat()}")
        h += HOUR
    days, conversations, d = [], [], since
    while d <= until:
        day_start, day_end = org_day_bounds(org, d)
        if day_start < now:
            conversations.append(f"c:{d.isoformat()}")
        if day_end <= now:
            days.append(f"d:{d.isoformat()}")
        d += timedelta(days=1)
    return hours + days + conversations


def backfill_start(
    *, org: Organization, since: date, until: date, via_celery: bool, restart: bool = False
) -> tuple[RollupBackfill, list[str], set[str]]:
    """Resume the unfinished run of the same range (unless `restart`) or start a new one.

    Returns the run, all its units and the units already done.
    """
    units = backfill_units(org=org, since=since, until=until)
    run = None
    if not restart:
        run = (
            RollupBackfill.objects.for_org(org)
            .filter(since=since, until=until, finished_at__isnull=True)
            .order_by("-started_at")
            .first()
        )
    if run is None:
        run = RollupBackfill.objects.create(
            organization=org, since=since, until=until, via_celery=via_celery
        )
    run.units_total = len(units)
    run.via_celery = via_celery
    run.save(update_fields=["units_total", "via_celery"])
    done = set(
        RollupBackfillUnit.objects.for_org(org).filter(backfill=run).values_list("unit", flat=True)
    )
    return run, units, done


def backfill_unit_done(*, backfill_id: int, unit: str) -> None:
    """Record a finished unit (a repeat is ignored)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {RollupBackfillUnit._meta.db_table}
                (organization_id, backfill_id, unit, done_at)
            SELECT organization_id, id, %s, now() FROM {RollupBackfill._meta.db_table} WHERE id = %s
            ON CONFLICT (organization_id, backfill_id, unit) DO NOTHING
            """,  # noqa: S608
            [unit, backfill_id],
        )


def backfill_done_count(*, backfill: RollupBackfill) -> int:
    return (
        RollupBackfillUnit.objects.for_org(backfill.organization_id)
        .filter(backfill=backfill)
        .count()
    )


def backfill_run_unit(*, backfill: RollupBackfill, org: Organization, unit: str) -> None:
    """Build one unit here and now, then record it."""
    kind, value = unit.split(":", 1)
    if kind == "h":
        rollup_build_hourly(org_id=org.pk, hour=datetime.fromisoformat(value))
    elif kind == "d":
        rollup_build_daily(org_id=org.pk, date=date.fromisoformat(value))
    elif kind == "c":
        start, end = org_day_bounds(org, date.fromisoformat(value))
        ids = conversation_ids_in_range(org_id=org.pk, start=start, end=end)
        for i in range(0, len(ids), 5000):
            conversation_metrics_build_many(org_id=org.pk, conversation_ids=ids[i : i + 5000])
    else:
        raise ValueError(f"unknown backfill unit {unit!r}")
    backfill_unit_done(backfill_id=backfill.pk, unit=unit)


def backfill_enqueue_unit(*, backfill: RollupBackfill, org: Organization, unit: str) -> None:
    """Queue one unit for the workers; the task records it when done."""
    kind, value = unit.split(":", 1)
    options = {"expires": None}  # a backfill waits for its units, however long the queue is
    if kind == "h":
        task_send_on_commit(ROLLUP_BUILD_HOURLY, args=[org.pk, value, backfill.pk], **options)
    elif kind == "d":
        task_send_on_commit(ROLLUP_BUILD_DAILY, args=[org.pk, value, backfill.pk], **options)
    elif kind == "c":
        start, end = org_day_bounds(org, date.fromisoformat(value))
        ids = conversation_ids_in_range(org_id=org.pk, start=start, end=end)
        task_send_on_commit(
            CONVERSATION_METRICS_BUILD, args=[org.pk, ids, backfill.pk, unit], **options
        )
    else:
        raise ValueError(f"unknown backfill unit {unit!r}")


def backfill_finish(*, backfill: RollupBackfill) -> None:
    backfill.finished_at = timezone.now()
    backfill.save(update_fields=["finished_at"])
