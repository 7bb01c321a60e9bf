"""Dirty marks: ingestion marks the hours it wrote, builds claim them, the beat asks what is due.

Dirty tracking. Ingestion marks the hour of every accepted event (`rollup_mark_hours`, one
INSERT .. ON CONFLICT DO NOTHING of the batch's distinct hours, in the ingest transaction), so
the marks are the work list: the hourly run rebuilds every complete marked hour (late data, a
missed run and a killed worker all leave their mark for the next run) and each rebuilt hour marks
its org-local day(s), whose daily metrics are rebuilt once the day is due at 01:00 org time.

Why a mark cannot be lost: ingestion takes a shared advisory lock on its org while it writes
(held to commit); a build takes the exclusive lock just around deleting the mark, which waits
for every ingest transaction that might have seen the mark already, so all their rows are
committed before the build reads. Ingestion that comes after finds the mark being deleted, waits
for the build to commit and inserts a fresh mark for the next run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from analytics.models import Organization
from analytics.services.rollup.common import (
    _T_ACT,
    _T_CONV,
    _T_DIRTY_DAY,
    _T_DIRTY_HOUR,
    _T_MSG,
    _T_ORG,
)
from analytics.timeutil import floor_hour

# Advisory-lock key space (first int4 of the two-key form) for "ingestion writing into org X".
INGEST_LOCK_SPACE = 0x62665231
DAILY_DUE_TIME = time(1, 0)  # daily bot metrics of a day are built from 01:00 org time next day


# --- marking (called by ingestion) -------------------------------------------------------------


def rollup_mark_hours(cursor, *, org_id: int, epoch_hours: Iterable[int]) -> None:
    """Mark org-hours (hours since the epoch) dirty; runs on the caller's ingest transaction.

    One statement: the shared advisory lock (so a build deleting a mark waits for this
    transaction) and the insert of the batch's distinct hours, ignoring those already marked.
    """
    hours = sorted(set(epoch_hours))  # one lock order for concurrent batches
    if not hours:
        return
    cursor.execute(
        f"""
        WITH barrier AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(%s, %s))
        INSERT INTO {_T_DIRTY_HOUR} (organization_id, hour, marked_at)
        SELECT %s, to_timestamp(h * 3600), now() FROM unnest(%s::bigint[]) AS h, barrier
        ON CONFLICT (organization_id, hour) DO NOTHING
        """,  # noqa: S608 - table names are ours
        [INGEST_LOCK_SPACE, org_id, org_id, hours],
    )


def rollup_mark_history(*, org_id: int) -> int:
    """Mark every hour that holds an org's messages, conversations or activities (after a bulk
    load that bypassed ingestion, e.g. the demo seeder); returns the number of hours marked."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {_T_DIRTY_HOUR} (organization_id, hour, marked_at)
            SELECT %s, h, now() FROM (
                SELECT date_trunc('hour', created_at) FROM {_T_MSG} WHERE organization_id = %s
                UNION SELECT date_trunc('hour', started_at) FROM {_T_CONV} WHERE organization_id = %s
                UNION SELECT date_trunc('hour', ended_at) FROM {_T_CONV}
                    WHERE organization_id = %s AND ended_at IS NOT NULL
                UNION SELECT date_trunc('hour', created_at) FROM {_T_ACT} WHERE organization_id = %s
            ) AS hours (h)
            ON CONFLICT (organization_id, hour) DO NOTHING
            """,  # noqa: S608
            [org_id] * 5,
        )
        return cursor.rowcount


# --- claiming (called by builds) -------------------------------------------------------------


def _claim(cursor, *, org_id: int, table: str, column: str, value) -> None:
    """Delete a dirty mark inside the build transaction, behind the org's ingest barrier.

    The exclusive advisory lock is session-level so it can be released right after the delete
    (ingestion waits microseconds, not for the whole build); the delete runs in a savepoint so
    the unlock always runs on a usable transaction.
    """
    cursor.execute("SELECT pg_advisory_lock(%s, %s)", [INGEST_LOCK_SPACE, org_id])
    try:
        with transaction.atomic():
            # SKIP LOCKED: a concurrent build of the same unit holds the mark; this one still
            # rebuilds from the same committed rows instead of holding the barrier meanwhile.
            cursor.execute(
                f"""DELETE FROM {table} WHERE id IN (
                    SELECT id FROM {table} WHERE organization_id = %s AND {column} = %s
                    FOR UPDATE SKIP LOCKED)""",  # noqa: S608
                [org_id, value],
            )
    finally:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [INGEST_LOCK_SPACE, org_id])


# --- what is due -----------------------------------------------------------------------------


def org_day_due(org: Organization, day: date) -> datetime:
    """When a day's daily metrics are due: 01:00 org time on the next day."""
    return datetime.combine(day + timedelta(days=1), DAILY_DUE_TIME, tzinfo=org.tz)


def rollup_due_hours(*, now: datetime | None = None) -> list[tuple[int, datetime]]:
    """(org id, hour) of every marked hour that is complete, oldest first."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT organization_id, hour FROM {_T_DIRTY_HOUR}
                WHERE hour < %s ORDER BY hour, organization_id""",  # noqa: S608
            [floor_hour(now)],
        )
        return [(org_id, hour.astimezone(UTC)) for org_id, hour in cursor.fetchall()]


def rollup_due_days(*, now: datetime | None = None) -> list[tuple[int, date]]:
    """(org id, date) of every marked day whose 01:00 (org time) of the next day has passed."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT d.organization_id, d.date, o.timezone FROM {_T_DIRTY_DAY} d
                JOIN {_T_ORG} o ON o.id = d.organization_id
                ORDER BY d.date, d.organization_id"""  # noqa: S608
        )
        rows = cursor.fetchall()
    orgs: dict[int, Organization] = {}
    due = []
    for org_id, day, tz in rows:
        org = orgs.setdefault(org_id, Organization(pk=org_id, timezone=tz))
        if org_day_due(org, day) <= now:
            due.append((org_id, day))
    return due
