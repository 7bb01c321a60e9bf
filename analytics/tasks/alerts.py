"""Alert tasks: thin wrappers that take ids and delegate to analytics.services.alerts.

Queue `alerts` (settings.CELERY_TASK_ROUTES): the minute evaluation and notification delivery,
so neither waits behind rollups, exports or insights.
"""

from __future__ import annotations

from celery import shared_task

from analytics.services.alerts import (
    alert_notification_send,
    alert_notifications_sweep,
    alert_rules_evaluate,
    retry_delay,
)
from analytics.tasks.base import retried_task
from config.outage import TRANSIENT


# Not the shared policy: one quick retry at most, since the next minute's run evaluates again.
@shared_task(
    name="analytics.alert_tasks.alert_rules_evaluate_task",
    bind=True,
    acks_late=True,
    expires=55,
    soft_time_limit=50,
    time_limit=55,
    autoretry_for=TRANSIENT,
    max_retries=1,
)
def alert_rules_evaluate_task(self) -> dict:
    """Beat, every minute: evaluate every enabled alert rule (expires before the next cycle)."""
    stats = alert_rules_evaluate()
    return {
        "rules": stats.rules,
        "fired": stats.fired,
        "resolved": stats.resolved,
        "notifications": stats.notifications,
        "seconds": round(stats.seconds, 3),
    }


# Not the shared policy: delivery retries on its own schedule (retry_delay) until given up.
@shared_task(
    name="analytics.alert_tasks.alert_notification_deliver_task",
    bind=True,
    acks_late=True,
    max_retries=None,
    soft_time_limit=60,
    time_limit=90,
)
def alert_notification_deliver_task(self, notification_id: int) -> str:
    """Deliver one alert notification; retried with backoff until it is sent or given up."""
    outcome = alert_notification_send(notification_id=notification_id)
    if outcome == "retry":
        raise self.retry(countdown=retry_delay(self.request.retries + 1))
    return outcome


@retried_task(
    "analytics.alert_tasks.alert_notifications_sweep_task",
    expires=9 * 60,
    rate_limit="1/s",
    soft_time_limit=120,
    time_limit=150,
)
def alert_notifications_sweep_task(self) -> int:
    """Beat, every 10 minutes: queue again notifications whose delivery task was lost."""
    return alert_notifications_sweep()
