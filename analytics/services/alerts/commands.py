"""The one way to create, change, mute, delete a rule and acknowledge an alert: the alerts page,
the API and the admin all come through here. A change made by someone (`actor`: a user or an
API key) is recorded in the audit log; `note` adds what the caller wants said about it."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from analytics.models import AlertEvent, AlertRule, Organization
from analytics.services.alerts.events import alert_changed_on_commit
from analytics.services.alerts.validation import alert_rule_prepare, alert_rule_validate
from analytics.services.audit import alert_rule_details, audit_record

MUTE_CHOICES = {
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}


def _audit(rule: AlertRule, action: str, *, actor, ip, details: dict) -> None:
    if actor is not None:
        audit_record(
            org=rule.organization_id,
            actor=actor,
            action=action,
            target=rule.name,
            details=details,
            ip=ip,
        )


def alert_rule_create(*, rule: AlertRule, actor=None, ip: str | None = None) -> AlertRule:
    """Validate, complete and save a new rule (built by a form or serializer, its organization
    and created_by set by the caller); ValidationError names the fields at fault."""
    alert_rule_validate(rule)
    alert_rule_prepare(rule)
    with transaction.atomic():
        rule.save()
        _audit(rule, "alert_rule.created", actor=actor, ip=ip, details=alert_rule_details(rule))
    return rule


def alert_rule_update(
    *, rule: AlertRule, changes: dict, actor=None, ip: str | None = None
) -> AlertRule:
    """Apply `changes` (field name -> value) to a rule, validated like a new one, and save it."""
    for name, value in changes.items():
        setattr(rule, name, value)
    alert_rule_validate(rule)
    alert_rule_prepare(rule)
    with transaction.atomic():
        rule.save()
        _audit(
            rule,
            "alert_rule.changed",
            actor=actor,
            ip=ip,
            details=alert_rule_details(rule, fields=changes),
        )
    return rule


def alert_rule_set_enabled(
    *, rule: AlertRule, enabled: bool, actor=None, ip: str | None = None, note: dict | None = None
) -> AlertRule:
    """Switch a rule on or off (a firing alert of a disabled rule resolves at the next cycle)."""
    rule.enabled = enabled
    with transaction.atomic():
        rule.save(update_fields=["enabled"])
        _audit(
            rule,
            "alert_rule.changed",
            actor=actor,
            ip=ip,
            details={**alert_rule_details(rule), **(note or {})},
        )
    return rule


def alert_rule_delete(
    *,
    rule: AlertRule,
    reason: str = "rule deleted",
    actor=None,
    ip: str | None = None,
    note: dict | None = None,
) -> None:
    """Delete a rule; a firing alert of it is resolved (kept in the history), not left open."""
    org = rule.organization
    with transaction.atomic():
        changed = alert_events_resolve(AlertEvent.objects.for_org(org).filter(rule=rule), reason)
        rule.delete()
        _audit(
            rule,
            "alert_rule.deleted",
            actor=actor,
            ip=ip,
            details={**alert_rule_details(rule), **(note or {})},
        )
    if changed:
        alert_changed_on_commit(org=org, changed=changed)


def alert_rule_mute(
    *,
    rule: AlertRule,
    duration: timedelta | None,
    actor=None,
    ip: str | None = None,
    note: dict | None = None,
) -> AlertRule:
    """Mute a rule for `duration` from now (None: unmute); its alerts leave the banner meanwhile."""
    rule.muted_until = timezone.now() + duration if duration else None
    with transaction.atomic():
        rule.save(update_fields=["muted_until"])
        _audit(
            rule,
            "alert_rule.changed",
            actor=actor,
            ip=ip,
            details={**alert_rule_details(rule), **(note or {})},
        )
    alert_changed_on_commit(org=rule.organization, changed=[])
    return rule


def alert_event_acknowledge(*, event: AlertEvent, user) -> AlertEvent:
    """Mark a firing alert seen by `user` (no more escalation notifications for it)."""
    if event.acknowledged_at is None:
        event.acknowledged_at = timezone.now()
        event.acknowledged_by = user if user and user.is_authenticated else None
        event.save(update_fields=["acknowledged_at", "acknowledged_by"])
        alert_changed_on_commit(org=Organization.objects.get(pk=event.organization_id), changed=[])
    return event


def alert_events_resolve(queryset, reason: str) -> list[tuple[AlertEvent, str]]:
    """Resolve the firing events of `queryset` with `reason`; returns [(event, "resolved")]."""
    now = timezone.now()
    changed = []
    for event in queryset.filter(status=AlertEvent.Status.FIRING):
        event.status, event.resolved_at, event.resolution = AlertEvent.Status.RESOLVED, now, reason
        event.save(update_fields=["status", "resolved_at", "resolution"])
        changed.append((event, "resolved"))
    return changed
