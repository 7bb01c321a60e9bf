"""Notifications of an alert: one row per channel (email, webhook), delivered by a Celery task with
retries and backoff, so a failing channel never loses the alert itself."""

from __future__ import annotations

import http.client
import logging
import time
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from analytics.alert_checks import email_recipients
from analytics.models import AlertEvent, AlertNotification, AlertRule
from analytics.services.alerts.webhooks import webhook_post, webhook_signature
from analytics.services.enqueue import ALERT_NOTIFICATION_DELIVER, task_send

log = logging.getLogger(__name__)


def alert_notifications_create(*, rule: AlertRule, event: AlertEvent, kind: str) -> int:
    """Create one notification per channel and queue their delivery after the commit."""
    rows = [
        AlertNotification(
            organization_id=rule.organization_id,
            event=event,
            channel="email",
            kind=kind,
            target=address,
        )
        for address in email_recipients(rule.email_recipients)
    ]
    if rule.webhook_url:
        rows.append(
            AlertNotification(
                organization_id=rule.organization_id,
                event=event,
                channel="webhook",
                kind=kind,
                target=rule.webhook_url,
            )
        )
    AlertNotification.objects.bulk_create(rows)
    ids = [n.pk for n in rows]

    def queue():
        for pk in ids:
            try:
                task_send(ALERT_NOTIFICATION_DELIVER, args=[pk])
            except Exception:  # noqa: BLE001 - the broker may be down; the sweep retries
                log.warning("could not queue alert notification %s", pk, exc_info=True)

    transaction.on_commit(queue)
    return len(rows)


def notification_payload(notification: AlertNotification) -> dict:
    event = notification.event
    rule = event.rule
    return {
        "type": f"alert.{notification.kind}",
        "alert": {
            "id": event.pk,
            "rule_id": event.rule_id,
            "rule": event.rule_name,
            "metric": event.metric,
            "scope": event.scope_label,
            "severity": event.severity,
            "status": event.status,
            "value": event.value,
            "threshold": event.threshold,
            "comparison": rule.comparison if rule else None,
            "started_at": event.started_at.isoformat(),
            "resolved_at": event.resolved_at.isoformat() if event.resolved_at else None,
        },
        "organization": notification.organization.slug,
        "sent_at": timezone.now().isoformat(),
    }


def alert_notification_send(*, notification_id: int) -> str:
    """One delivery attempt: "sent", "retry" (try again later) or "failed" (gave up)."""
    n = (
        AlertNotification.objects.select_related("event__rule", "organization")
        .filter(pk=notification_id)
        .first()
    )
    if n is None or n.status != AlertNotification.Status.PENDING:
        return "gone"
    n.attempts += 1
    error = ""
    try:
        payload = notification_payload(n)
        if n.channel == AlertNotification.Channel.EMAIL:
            alert = payload["alert"]
            subject = (
                f"[BotFlow] {n.kind.upper()}: {alert['rule']} ({alert['severity']})"
                if n.kind != "resolved"
                else f"[BotFlow] RESOLVED: {alert['rule']}"
            )
            send_mail(subject, _email_text(payload), None, [n.target], fail_silently=False)
        else:
            rule = n.event.rule
            secret = rule.webhook_secret if rule else ""
            body = orjson.dumps(payload)
            stamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "BotFlow-Alerts/1",
                "X-BotFlow-Event": payload["type"],
                "X-BotFlow-Delivery": str(n.pk),
                "X-BotFlow-Signature": webhook_signature(secret, stamp, body),
            }
            status = webhook_post(n.target, body, headers, timeout=settings.ALERT_WEBHOOK_TIMEOUT)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        error = f"{exc.__class__.__name__}: {exc}"[:500]
    if not error:
        n.status, n.sent_at, n.last_error = AlertNotification.Status.SENT, timezone.now(), ""
    else:
        n.last_error = error
        if n.attempts >= settings.ALERT_NOTIFY_MAX_ATTEMPTS:
            n.status = AlertNotification.Status.FAILED
    n.save(update_fields=["status", "attempts", "last_error", "sent_at"])
    if n.status == AlertNotification.Status.PENDING:
        return "retry"
    return n.status


def retry_delay(attempts: int) -> int:
    """Seconds before the next try: base, x3, x9, ... (capped at an hour)."""
    return min(3600, settings.ALERT_NOTIFY_BACKOFF * 3 ** max(0, attempts - 1))


def _email_text(payload: dict) -> str:
    a = payload["alert"]
    lines = [
        f"Rule: {a['rule']} ({a['scope']})",
        f"Status: {payload['type'].removeprefix('alert.')} — severity {a['severity']}",
        f"Metric: {a['metric']} = {a['value']} (threshold {a['comparison'] or ''} {a['threshold']})",
        f"Started: {a['started_at']}",
    ]
    if a["resolved_at"]:
        lines.append(f"Resolved: {a['resolved_at']}")
    return "\n".join(lines) + "\n"


def alert_notifications_sweep(*, now: datetime | None = None) -> int:
    """Queue pending notifications whose task was lost (broker down at commit, worker killed)."""
    now = now or timezone.now()
    stale = AlertNotification.objects.filter(
        status=AlertNotification.Status.PENDING,
        created_at__lt=now - timedelta(minutes=10),
        created_at__gte=now - timedelta(days=1),
    ).values_list("pk", flat=True)[:500]
    ids = list(stale)
    for pk in ids:
        task_send(ALERT_NOTIFICATION_DELIVER, args=[pk])
    return len(ids)
