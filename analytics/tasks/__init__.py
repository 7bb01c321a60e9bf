"""Celery tasks (found by `app.autodiscover_tasks()`): ids in, one service call, one retry policy.

rollups (hourly/daily rollups, conversation metrics), alerts (evaluation, notifications),
insights (forecasts and anomalies), exports (large CSVs),
maintenance (retention). Every task keeps the registered name
it had before this package existed (`analytics.tasks.*`, `analytics.alert_tasks.*`,
`analytics.export_build`): beat's schedules and queued messages name tasks that way.
"""

from analytics.tasks.alerts import (
    alert_notification_deliver_task,
    alert_notifications_sweep_task,
    alert_rules_evaluate_task,
)
from analytics.tasks.exports import export_build
from analytics.tasks.insights import insights_refresh_dispatch, insights_refresh_task
from analytics.tasks.maintenance import retention_enforce_task
from analytics.tasks.rollups import (
    conversation_metrics_build_task,
    conversation_metrics_on_end,
    conversation_metrics_sweep,
    rollup_build_daily_task,
    rollup_build_hourly_task,
    rollup_daily_dispatch,
    rollup_hourly_dispatch,
)

__all__ = [
    "alert_notification_deliver_task",
    "alert_notifications_sweep_task",
    "alert_rules_evaluate_task",
    "conversation_metrics_build_task",
    "conversation_metrics_on_end",
    "conversation_metrics_sweep",
    "export_build",
    "insights_refresh_dispatch",
    "insights_refresh_task",
    "retention_enforce_task",
    "rollup_build_daily_task",
    "rollup_build_hourly_task",
    "rollup_daily_dispatch",
    "rollup_hourly_dispatch",
]
