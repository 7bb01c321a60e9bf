"""Alert rules: validation, the commands that change them, evaluation every minute, notifications
and webhooks. Callers import from here; the modules of this package import from each other's
real place.

- validation: every check before a rule is saved (the model's, then where its webhook resolves)
- commands: create, update, enable, mute, delete a rule, acknowledge an alert (page, API, admin)
- evaluation: the metric of each rule, its level, firing and recovery; the open alerts
- notifications: one row per channel, delivered with retries by a Celery task
- webhooks: where a webhook may go, signed and pinned delivery
- events: `alert_changed`, sent on commit for the live layer to render and publish
"""

from analytics.alert_checks import address_allowed, email_recipients, embedded_ipv4
from analytics.services.alerts.commands import (
    MUTE_CHOICES,
    alert_event_acknowledge,
    alert_events_resolve,
    alert_rule_create,
    alert_rule_delete,
    alert_rule_mute,
    alert_rule_set_enabled,
    alert_rule_update,
)
from analytics.services.alerts.evaluation import (
    COUNTER_METRICS,
    LIVE_WINDOW_MAX,
    RANK,
    CycleStats,
    ScopeData,
    ScopeNeeds,
    alert_level,
    alert_rules_evaluate,
    firing_alerts,
    scope_label,
)
from analytics.services.alerts.events import alert_changed, alert_changed_on_commit
from analytics.services.alerts.notifications import (
    alert_notification_send,
    alert_notifications_create,
    alert_notifications_sweep,
    notification_payload,
    retry_delay,
)
from analytics.services.alerts.validation import alert_rule_prepare, alert_rule_validate
from analytics.services.alerts.webhooks import (
    webhook_post,
    webhook_signature,
    webhook_target,
    webhook_url_check,
    webhook_url_masked,
)

__all__ = [
    "COUNTER_METRICS",
    "LIVE_WINDOW_MAX",
    "MUTE_CHOICES",
    "RANK",
    "CycleStats",
    "ScopeData",
    "ScopeNeeds",
    "address_allowed",
    "alert_changed",
    "alert_changed_on_commit",
    "alert_event_acknowledge",
    "alert_events_resolve",
    "alert_level",
    "alert_notification_send",
    "alert_notifications_create",
    "alert_notifications_sweep",
    "alert_rule_create",
    "alert_rule_delete",
    "alert_rule_mute",
    "alert_rule_prepare",
    "alert_rule_set_enabled",
    "alert_rule_update",
    "alert_rule_validate",
    "alert_rules_evaluate",
    "email_recipients",
    "embedded_ipv4",
    "firing_alerts",
    "notification_payload",
    "retry_delay",
    "scope_label",
    "webhook_post",
    "webhook_signature",
    "webhook_target",
    "webhook_url_check",
    "webhook_url_masked",
]
