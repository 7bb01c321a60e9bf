"""The audit log: one `audit_record` call wherever a member, key, rule or export changes hands.

Entries name their actor and target by label as well as by key, so they outlive what they name.
`details` holds settings (roles, scopes, rule fields), never customer data.
"""

from __future__ import annotations

import ipaddress

from django.contrib.auth import get_user_model

from analytics.models import ApiKey, AuditEvent, Organization

ACTIONS: dict[str, str] = {
    "member.invited": "Member invited",
    "invitation.revoked": "Invitation revoked",
    "member.joined": "Member joined",
    "member.added": "Member added (admin)",
    "member.role_changed": "Role changed",
    "member.removed": "Member removed",
    "apikey.created": "API key created",
    "apikey.revoked": "API key revoked",
    "alert_rule.created": "Alert rule created",
    "alert_rule.changed": "Alert rule changed",
    "alert_rule.deleted": "Alert rule deleted",
    "export.downloaded": "Export downloaded",
    "customer.erased": "Customer data erased",
    "customer.exported": "Customer data exported",
}


def actor_label(actor) -> str:
    """`alice`, `API key 1a2b3c4d`, or `system` for work nobody asked for."""
    if isinstance(actor, ApiKey):
        return f"API key {actor.prefix}"
    if actor is not None and getattr(actor, "is_authenticated", False):
        return actor.get_username()
    return "system"


def request_ip(request) -> str | None:
    """The client address the server saw (REMOTE_ADDR, set by daphne from trusted proxy
    headers only); None when it is not an IP address."""
    if request is None:
        return None
    raw = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def request_actor(request):
    """Who made a request: the API key that authenticated it, else the signed-in user."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return auth
    return getattr(request, "user", None)


def audit_record(
    *,
    org: Organization | int,
    actor,
    action: str,
    target: str = "",
    details: dict | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """Store one audit entry. `actor` is a user, an ApiKey or None; `action` one of ACTIONS."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    org_id = org if isinstance(org, int) else org.pk
    user = actor if isinstance(actor, get_user_model()) and actor.pk else None
    return AuditEvent.objects.create(
        organization_id=org_id,
        actor=user,
        actor_label=actor_label(actor)[:150],
        action=action,
        target=str(target)[:200],
        details=details or {},
        ip_address=ip,
    )


def audit_request(
    request, *, action: str, target: str = "", details: dict | None = None, org=None
) -> AuditEvent:
    """`audit_record` for the org, actor and address of a request (a page or an API call)."""
    return audit_record(
        org=org if org is not None else request.org,
        actor=request_actor(request),
        action=action,
        target=target,
        details=details,
        ip=request_ip(request),
    )


def alert_rule_details(rule, *, fields=None) -> dict:
    """What an alert rule entry records: its condition, and the fields changed (names only;
    webhook URLs and recipients can be secrets, so they are never copied)."""
    scope = "organization"
    if rule.bot_id:
        scope = f"bot {rule.bot.slug}"
    elif rule.campaign_id:
        scope = f"campaign {rule.campaign.slug}"
    details = {
        "metric": rule.metric,
        "scope": scope,
        "warning": rule.warning_threshold,
        "critical": rule.critical_threshold,
        "enabled": rule.enabled,
    }
    if fields is not None:
        details["changed"] = sorted(fields)
    return details


def export_details(params, *, kind: str) -> dict:
    """An export entry's details: the kind and the names of the filters used; their values
    (search terms, customers) can be customer data and are left out."""
    return {"kind": kind, "filters": sorted(k for k, v in params.items() if v and k != "format")}
