"""Everything a rule must pass before it is saved: the model's checks (no I/O), then where its
webhook host resolves; and what a user may leave out."""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError

from analytics.models import AlertRule
from analytics.services.alerts.webhooks import webhook_url_check

# organization and created_by are set by the caller, never by the user's input
NOT_USER_FIELDS = ("organization", "created_by")


def alert_rule_validate(rule: AlertRule) -> None:
    """Raise one ValidationError (by field) with every reason `rule` may not be saved."""
    errors: dict = {}
    try:
        rule.full_clean(exclude=list(NOT_USER_FIELDS))
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    if rule.webhook_url and "webhook_url" not in errors:
        problems = webhook_url_check(rule.webhook_url)
        if problems:
            errors["webhook_url"] = problems
    if errors:
        raise ValidationError(errors)


def alert_rule_prepare(rule: AlertRule) -> AlertRule:
    """Fill what a user may leave out: a signing secret whenever a webhook is set."""
    if rule.webhook_url and not rule.webhook_secret:
        rule.webhook_secret = secrets.token_urlsafe(32)
    return rule
