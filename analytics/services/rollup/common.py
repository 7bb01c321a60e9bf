"""What the rollup modules share: the tables they read and write, and the build session setup."""

from __future__ import annotations

from analytics.models import (
    Activity,
    Bot,
    BotDailyMetrics,
    BotHourlyRollup,
    Conversation,
    ConversationMetrics,
    Message,
    Organization,
    OrgHourlyUsage,
    RollupDirtyDay,
    RollupDirtyHour,
)

_T_ORG = Organization._meta.db_table
_T_MSG = Message._meta.db_table
_T_CONV = Conversation._meta.db_table
_T_ACT = Activity._meta.db_table
_T_BOT = Bot._meta.db_table
_T_HOURLY = BotHourlyRollup._meta.db_table
_T_USAGE = OrgHourlyUsage._meta.db_table
_T_DAILY = BotDailyMetrics._meta.db_table
_T_CM = ConversationMetrics._meta.db_table
_T_DIRTY_HOUR = RollupDirtyHour._meta.db_table
_T_DIRTY_DAY = RollupDirtyDay._meta.db_table


def _derived(cursor) -> None:
    """Rollups are derived data: commit without waiting for the WAL flush. A crash can lose only
    the latest builds, together with the deletion of their dirty marks, so they are redone."""
    cursor.execute("SET LOCAL synchronous_commit TO off")


def _bot_ids(cursor, org_id: int) -> list[int]:
    cursor.execute(f"SELECT id FROM {_T_BOT} WHERE organization_id = %s", [org_id])  # noqa: S608
    return [row[0] for row in cursor.fetchall()]
