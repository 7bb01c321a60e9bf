"""Celery tasks of insights and alerts: thin wrappers that take ids and delegate to the services.

Queues: `insights` (forecasts and anomalies, minutes of CPU per org) and `alerts` (the minute
evaluation and notification delivery), so neither waits behind rollups or exports.
"""

from __future__ import annotations

from celery import shared_task

from config.outage import TRANSIENT

_RETRY = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT,  # PostgreSQL or Redis unreachable: try again later
    "max_retries": 3,
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
}


@shared_task(**_RETRY, expires=50 * 60, rate_limit="2/s", soft_time_limit=600, time_limit=660)
def insights_refresh_task(self, org_id: int) -> int:
    """Recompute one org's forecasts, anomalies and customers at risk."""
    from analytics.services.insights import insights_refresh

    return insights_refresh(org_id=org_id)


@shared_task(**_RETRY, expires=50 * 60, rate_limit="1/s", soft_time_limit=120, time_limit=150)
def insights_refresh_dispatch(self) -> int:
    """Beat, every 15 minutes: refresh the insights of every org whose report is over an hour old."""
    from analytics.services.insights import insights_orgs_due

    due = insights_orgs_due()
    for org_id in due:
        insights_refresh_task.apply_async(args=[org_id])
    return len(due)


@shared_task(
    bind=True, acks_late=True, expires=55, soft_time_limit=50, time_limit=55,
    autoretry_for=TRANSIENT, max_retries=1,
)  # fmt: skip
def alert_rules_evaluate_task(self) -> dict:
    """Beat, every minute: evaluate every enabled alert rule (expires before the next cycle)."""
    from analytics.services.alerts import alert_rules_evaluate

    stats = alert_rules_evaluate()
    return {"rules": stats.rules, "fired": stats.fired, "resolved": stats.resolved,
            "notifications": stats.notifications, "seconds": round(stats.seconds, 3)}  # fmt: skip


@shared_task(bind=True, acks_late=True, max_retries=None, soft_time_limit=60, time_limit=90)
def alert_notification_deliver_task(self, notification_id: int) -> str:
    """Deliver one alert notification; retried with backoff until it is sent or given up."""
    from analytics.services.alerts import alert_notification_send, retry_delay

    outcome = alert_notification_send(notification_id=notification_id)
    if outcome == "retry":
        raise self.retry(countdown=retry_delay(self.request.retries + 1))
    return outcome


@shared_task(**_RETRY, expires=9 * 60, rate_limit="1/s", soft_time_limit=120, time_limit=150)
def alert_notifications_sweep_task(self) -> int:
    """Beat, every 10 minutes: queue again notifications whose delivery task was lost."""
    from analytics.services.alerts import alert_notifications_sweep

    return alert_notifications_sweep()
