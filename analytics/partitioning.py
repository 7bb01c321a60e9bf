"""Monthly range partitions of the raw event tables: their names, bounds and DDL (no I/O).

`analytics_message` and `analytics_activity` are partitioned by RANGE on `created_at`, and
`analytics_eventreceipt` (the idempotency receipts) on `occurred_month`, the UTC month of the
event's own timestamp (a date, the 1st), so a receipt lives in the month of the message or
activity it produced and leaves with it. One partition per calendar month in UTC
(`<table>_p2026_12` holds December 2026), plus a DEFAULT partition (`<table>_pdefault`) that
catches a row no month partition covers yet, so an insert never fails. Old data leaves by
detaching and dropping a whole month (analytics.services.retention), never by a DELETE of
millions of rows. The migrations that partitioned the tables (0009, 0011) and the maintenance
service both build their DDL here.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

#: table -> the time column it is partitioned by
PARTITIONED = {
    "analytics_message": "created_at",
    "analytics_activity": "created_at",
    "analytics_eventreceipt": "occurred_month",
}
#: months of partitions kept ready ahead of the current one
MONTHS_AHEAD = 3

_NAME = re.compile(r"_p(\d{4})_(\d{2})$")


def month_start(value: date | datetime) -> date:
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date()
    return value.replace(day=1)


def current_month() -> date:
    """The first day of the current month in UTC (a receipt's `occurred_month` by default)."""
    return month_start(datetime.now(UTC))


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    """Every month from `first`'s to `last`'s, both included."""
    months, month = [], month_start(first)
    while month <= month_start(last):
        months.append(month)
        month = add_months(month, 1)
    return months


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y_%m}"


def default_partition_name(table: str) -> str:
    return f"{table}_pdefault"


def partition_month(table: str, name: str) -> date | None:
    """The month a partition of `table` holds, from its name (None: not a month partition)."""
    if not name.startswith(table + "_p"):
        return None
    found = _NAME.search(name)
    return date(int(found[1]), int(found[2]), 1) if found else None


def bounds(month: date) -> tuple[datetime, datetime]:
    """[start, end) of a month partition, in UTC."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    nxt = add_months(month, 1)
    return start, datetime(nxt.year, nxt.month, 1, tzinfo=UTC)


def _literal(at: datetime) -> str:
    return f"'{at:%Y-%m-%d %H:%M:%S}+00'"


def create_partition_sql(table: str, month: date) -> str:
    start, end = bounds(month)
    return (
        f'CREATE TABLE IF NOT EXISTS "{partition_name(table, month)}" PARTITION OF "{table}" '
        f"FOR VALUES FROM ({_literal(start)}) TO ({_literal(end)})"
    )


def create_default_sql(table: str) -> str:
    return f'CREATE TABLE IF NOT EXISTS "{default_partition_name(table)}" PARTITION OF "{table}" DEFAULT'


def attach_partition_sql(table: str, month: date) -> str:
    start, end = bounds(month)
    return (
        f'ALTER TABLE "{table}" ATTACH PARTITION "{partition_name(table, month)}" '
        f"FOR VALUES FROM ({_literal(start)}) TO ({_literal(end)})"
    )
