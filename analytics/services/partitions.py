"""The raw event tables' monthly partitions: kept ready ahead, listed, detached and dropped.

The DDL comes from analytics.partitioning. A month that has no partition yet still accepts rows
(the DEFAULT partition holds them); `partitions_ensure` then moves them into the month's own
partition when it creates it, in one transaction.
"""

# ruff: noqa: S608 - the SQL names only our own tables and columns; values are parameters
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from analytics import partitioning

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    month: date | None  # None: the DEFAULT partition
    rows_estimate: int


def partitions_list(table: str) -> list[Partition]:
    """The table's partitions, oldest month first (the DEFAULT partition last)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [table],
        )
        rows = cursor.fetchall()
    parts = [
        Partition(table, name, partitioning.partition_month(table, name), n) for name, n in rows
    ]
    return sorted(parts, key=lambda p: (p.month is None, p.month or date.max))


def partitions_ensure(*, now: datetime | None = None, until: date | None = None) -> list[str]:
    """Create the month partitions from the current month to MONTHS_AHEAD ahead (or `until`)
    that do not exist yet; returns the names created. Idempotent."""
    now = now or timezone.now()
    first = partitioning.month_start(now)
    last = until or partitioning.add_months(first, partitioning.MONTHS_AHEAD)
    created = []
    for table, column in partitioning.PARTITIONED.items():
        have = {p.month for p in partitions_list(table)}
        for month in partitioning.months_between(first, last):
            if month not in have:
                _create(table, column, month)
                created.append(partitioning.partition_name(table, month))
    if created:
        log.info("partitions created: %s", ", ".join(created))
    return created


def _create(table: str, column: str, month: date) -> None:
    """The month's partition; rows the DEFAULT partition holds for it move in with it."""
    name = partitioning.partition_name(table, month)
    default = partitioning.default_partition_name(table)
    start, end = partitioning.bounds(month)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f'SELECT EXISTS (SELECT 1 FROM "{default}" WHERE {column} >= %s AND {column} < %s)',
            [start, end],
        )
        if not cursor.fetchone()[0]:
            cursor.execute(partitioning.create_partition_sql(table, month))
            return
        cursor.execute(
            f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'
        )
        cursor.execute(
            f'WITH moved AS (DELETE FROM "{default}" WHERE {column} >= %s AND {column} < %s '
            f'RETURNING *) INSERT INTO "{name}" SELECT * FROM moved',
            [start, end],
        )
        cursor.execute(partitioning.attach_partition_sql(table, month))


def partition_drop(partition: Partition, *, lock_timeout_ms: int = 2000) -> bool:
    """Detach and drop one month partition. False (nothing changed) when a query holds the
    table longer than the lock timeout — a running export, say: the next run tries again.

    The detach is the only step that locks the parent table, and it takes milliseconds; the
    drop that follows frees the files of a table nothing can read any more."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        try:
            with transaction.atomic():
                cursor.execute(
                    f'ALTER TABLE "{partition.table}" DETACH PARTITION "{partition.name}"'
                )
        except OperationalError as exc:  # lock_timeout: LockNotAvailable
            log.warning("partition %s not dropped, in use: %s", partition.name, exc)
            return False
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE "{partition.name}"')
    return True
