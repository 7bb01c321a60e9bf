"""Rollups: hourly bot and org figures, daily bot metrics and per-conversation metrics.

Each unit (an org-hour, an org-day, a set of conversations) is rebuilt from the raw tables by
set-based SQL in one transaction and upserted on its unique key (INSERT .. ON CONFLICT DO UPDATE),
so running a unit twice, or twice at once, leaves identical rows, and a run killed half-way leaves
the previous rows untouched: nothing partial is ever visible.

Empty periods have no rows. A bot-hour or bot-day row exists only when the bot had a message,
a conversation start or end, or (hourly) an activity in it; an org-hour row only when any of its
bots had one. A missing row for a period that is not marked dirty means "nothing happened": counts
are zero and rates and percentiles are undefined (a gap in a chart, never a zero or an
interpolated value). Periods still marked dirty (RollupDirtyHour) are not rolled up yet; charts
show them as gaps too (`analytics.selectors.rollup_pending_hours`).

Dirty tracking and why a mark cannot be lost: see `analytics.services.rollup.dirty`.

Rates are percentages (0-100), like the live cards; an outbound reply without an outcome counts
as a success, and a conversation that ended escalated counts as a handoff (as in live state).
"""

from analytics.services.rollup.conversations import (
    SWEEP_ACTIVE_WITHIN,
    SWEEP_ENDED_WITHIN,
    conversation_ids_in_range,
    conversation_metrics_build,
    conversation_metrics_build_many,
    conversation_metrics_enqueue,
    conversation_metrics_stale,
    conversation_metrics_sweep,
)
from analytics.services.rollup.daily import DailyResult, rollup_build_daily
from analytics.services.rollup.dirty import (
    DAILY_DUE_TIME,
    INGEST_LOCK_SPACE,
    org_day_due,
    rollup_due_days,
    rollup_due_hours,
    rollup_mark_history,
    rollup_mark_hours,
)
from analytics.services.rollup.hourly import HourlyResult, rollup_build_hourly

__all__ = [
    "DAILY_DUE_TIME",
    "INGEST_LOCK_SPACE",
    "SWEEP_ACTIVE_WITHIN",
    "SWEEP_ENDED_WITHIN",
    "DailyResult",
    "HourlyResult",
    "conversation_ids_in_range",
    "conversation_metrics_build",
    "conversation_metrics_build_many",
    "conversation_metrics_enqueue",
    "conversation_metrics_stale",
    "conversation_metrics_sweep",
    "org_day_due",
    "rollup_build_daily",
    "rollup_build_hourly",
    "rollup_due_days",
    "rollup_due_hours",
    "rollup_mark_history",
    "rollup_mark_hours",
]
