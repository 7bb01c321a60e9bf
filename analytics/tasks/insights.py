"""Insights tasks: thin wrappers that take ids and delegate to analytics.services.insights.

Queue `insights` (settings.CELERY_TASK_ROUTES): forecasts and anomalies take minutes of CPU per
org, so they never wait behind rollups or exports, nor hold up alert evaluation.
"""

from __future__ import annotations

from analytics.services.insights import insights_orgs_due, insights_refresh
from analytics.tasks.base import retried_task


@retried_task(
    "analytics.alert_tasks.insights_refresh_task",
    expires=50 * 60,
    rate_limit="2/s",
    soft_time_limit=600,
    time_limit=660,
)
def insights_refresh_task(self, org_id: int) -> int:
    """Recompute one org's forecasts, anomalies and customers at risk."""
    return insights_refresh(org_id=org_id)


@retried_task(
    "analytics.alert_tasks.insights_refresh_dispatch",
    expires=50 * 60,
    rate_limit="1/s",
    soft_time_limit=120,
    time_limit=150,
)
def insights_refresh_dispatch(self) -> int:
    """Beat, every 15 minutes: refresh the insights of every org whose report is over an hour old."""
    due = insights_orgs_due()
    for org_id in due:
        insights_refresh_task.apply_async(args=[org_id])
    return len(due)
