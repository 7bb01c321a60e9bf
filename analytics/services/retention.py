"""Data retention (issue 14): raw events leave after the org's `raw_retention_days`, rollups
after its `rollup_retention_days`. Run daily by beat (`retention_enforce`); idempotent.

How the raw events leave:
- A month partition of `message` / `activity` / `eventreceipt` (the idempotency receipts, by
  their event's month) whose whole month is older than the LONGEST retention of any org is
  detached and dropped: milliseconds, whatever its size. Nothing is dropped while a backfill
  that reads the month runs, and a drop that waits on a query (a running export holds the
  table) gives up after a lock timeout and is retried next run.
- An org that keeps less than that loses its expired rows in small batches by its own index
  (the rows of one day per daily run), never one statement over millions of rows: most orgs
  keep the default, and their data leaves only with the partitions.
- Conversations (with their metrics) are not partitioned: their expired rows leave in the same
  bounded batches.
A receipt is only needed while its event could be accepted again, and ingestion refuses events
older than the org's retention: receipts leave with their event's month (or batch).
Reads clamp to the org's retention at once (analytics.filters, the read API), and ingestion
refuses older events, so nothing past it is visible even before it is removed.
"""

# ruff: noqa: S608 - the SQL names only our own tables and columns; values are parameters
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import connection
from django.utils import timezone

from analytics import partitioning
from analytics.models import (
    RAW_RETENTION_MAX,
    Activity,
    BotDailyMetrics,
    BotHourlyRollup,
    Conversation,
    ConversationMetrics,
    EventReceipt,
    Message,
    Organization,
    OrgHourlyUsage,
    RollupBackfill,
)
from analytics.services.partitions import partition_drop, partitions_ensure, partitions_list

log = logging.getLogger(__name__)

BATCH = 5_000  # rows per DELETE statement
MAX_BATCHES = 200  # per table and org per run: a backlog is worked off over several runs
#: a backfill that has run this long without finishing is presumed dead (it no longer blocks)
BACKFILL_STALE = timedelta(hours=12)


@dataclass
class RetentionResult:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deferred: dict[str, str] = field(default_factory=dict)  # partition -> why it was kept
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows removed in batches

    def count(self, table: str, n: int) -> None:
        if n:
            self.deleted[table] = self.deleted.get(table, 0) + n


def retention_enforce(*, now: datetime | None = None) -> RetentionResult:
    now = now or timezone.now()
    result = RetentionResult(created=partitions_ensure(now=now))
    orgs = list(Organization.objects.only("id", "raw_retention_days", "rollup_retention_days"))
    longest = max((o.raw_retention_days for o in orgs), default=RAW_RETENTION_MAX)
    _drop_expired_partitions(now - timedelta(days=longest), now=now, result=result)
    for org in orgs:
        _expire_org(org, now=now, result=result)
    log.info(
        "retention: dropped %s, deferred %s, deleted %s",
        result.dropped or "none",
        result.deferred or "none",
        result.deleted or "nothing",
    )
    return result


def _drop_expired_partitions(cutoff: datetime, *, now: datetime, result: RetentionResult) -> None:
    reading = _backfilled_since(now)
    for table in partitioning.PARTITIONED:
        for part in partitions_list(table):
            if part.month is None or partitioning.bounds(part.month)[1] > cutoff:
                continue
            if reading is not None and reading < partitioning.bounds(part.month)[1].date():
                result.deferred[part.name] = "a rollup backfill is reading this month"
            elif partition_drop(part):
                result.dropped.append(part.name)
            else:
                result.deferred[part.name] = (
                    "a query is reading it (e.g. an export); retried next run"
                )


def _backfilled_since(now: datetime) -> date | None:
    """The earliest day a running backfill reads (None: no backfill runs)."""
    running = RollupBackfill.objects.filter(
        finished_at__isnull=True, started_at__gte=now - BACKFILL_STALE
    ).order_by("since")
    return running.values_list("since", flat=True).first()


def _expire_org(org: Organization, *, now: datetime, result: RetentionResult) -> None:
    raw_cutoff = now - timedelta(days=org.raw_retention_days)
    for model, column, cutoff in (
        (Message, "created_at", raw_cutoff),
        (Activity, "created_at", raw_cutoff),
        # by the month of their event: a receipt goes once its whole month is past the cutoff
        (EventReceipt, "occurred_month", partitioning.month_start(raw_cutoff)),
    ):
        result.count(model._meta.db_table, _delete_batches(model, column, org.pk, cutoff))
    conversations = Conversation._meta.db_table
    metrics = ConversationMetrics._meta.db_table
    removed = 0
    for _ in range(MAX_BATCHES):
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH gone AS (SELECT id FROM {conversations} WHERE organization_id = %s"
                f" AND started_at < %s AND last_activity_at < %s LIMIT {BATCH}),"
                f" m AS (DELETE FROM {metrics} WHERE conversation_id IN (SELECT id FROM gone))"
                f" DELETE FROM {conversations} WHERE id IN (SELECT id FROM gone)",
                [org.pk, raw_cutoff, raw_cutoff],
            )
            removed += cursor.rowcount
            if cursor.rowcount < BATCH:
                break
    result.count(conversations, removed)
    rollup_cutoff = now - timedelta(days=org.rollup_retention_days)
    for model, column, cutoff in (
        (BotHourlyRollup, "hour", rollup_cutoff),
        (OrgHourlyUsage, "hour", rollup_cutoff),
        (BotDailyMetrics, "date", rollup_cutoff.date()),
    ):
        result.count(model._meta.db_table, _delete_batches(model, column, org.pk, cutoff, key="id"))


def _delete_batches(model, column: str, org_id: int, cutoff, *, key: str = "") -> int:
    """Delete the org's rows older than `cutoff` in batches of BATCH; returns how many."""
    table = model._meta.db_table
    # A partitioned table's rows are named by the whole primary key (id, time).
    ident = key or f"id, {column}"
    removed = 0
    for _ in range(MAX_BATCHES):
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE ({ident}) IN (SELECT {ident} FROM {table}"
                f" WHERE organization_id = %s AND {column} < %s LIMIT {BATCH})",
                [org_id, cutoff],
            )
            removed += cursor.rowcount
            if cursor.rowcount < BATCH:
                break
    return removed
