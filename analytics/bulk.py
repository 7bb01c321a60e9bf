"""COPY into tenant tables: the one bulk-write path of ingestion and the demo seeder."""

from __future__ import annotations

from collections.abc import Iterable

# Column orders of the rows handed to copy_rows().
CONVERSATION_COLUMNS = (
    "id",
    "organization_id",
    "bot_id",
    "campaign_id",
    "external_id",
    "customer",
    "channel",
    "status",
    "started_at",
    "last_activity_at",
    "ended_at",
    "handoff",
    "csat",
    "call_outcome",
)
MESSAGE_COLUMNS = (
    "organization_id",
    "bot_id",
    "conversation_id",
    "direction",
    "text",
    "created_at",
    "response_time_ms",
    "outcome",
    "tokens",
    "cost_usd",
    "kb_hit",
)
ACTIVITY_COLUMNS = (
    "organization_id",
    "bot_id",
    "kind",
    "description",
    "customer",
    "value",
    "created_at",
)
GAUGE_COLUMNS = ("organization_id", "bot_id", "campaign_id", "name", "value", "created_at")


def copy_rows(cursor, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """COPY `rows` (tuples in `columns` order) into `table` on the current transaction."""
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
