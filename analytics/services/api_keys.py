"""API keys: created with the full secret shown once; only a prefix and a SHA-256 hash are kept."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from analytics.models import ApiKey, Organization
from analytics.services.audit import audit_record

KEY_PREFIX = "bf"
VALID_SCOPES = frozenset(ApiKey.Scope.values)


@dataclass(frozen=True)
class CreatedKey:
    api_key: ApiKey
    secret: str  # the full key; never stored, shown exactly once


def _hash(secret: str) -> str:
    # The secret carries 256 bits of randomness, so a fast hash is as safe as a slow one here
    # and keeps authentication cheap on the ingest hot path.
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(raw: str | list[str]) -> list[str]:
    scopes = raw if isinstance(raw, list) else [s.strip() for s in raw.split(",") if s.strip()]
    unknown = sorted(set(scopes) - VALID_SCOPES)
    if unknown:
        raise ValidationError(
            {
                "scopes": f"Unknown scope(s): {', '.join(unknown)}. Use {', '.join(sorted(VALID_SCOPES))}."
            }
        )
    if not scopes:
        raise ValidationError({"scopes": "Give at least one scope."})
    return sorted(set(scopes))


def api_key_issue_secret(api_key: ApiKey) -> str:
    """Give an unsaved key a fresh prefix and hash; return the full secret (the only copy)."""
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key.prefix = prefix
    api_key.key_hash = _hash(secret)
    return secret


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    name: str,
    scopes: list[str] | str,
    created_by=None,
    ip: str | None = None,
) -> CreatedKey:
    """Create a key; the returned secret is the only time the full key exists."""
    api_key = ApiKey(
        organization=organization, name=name, scopes=parse_scopes(scopes), created_by=created_by
    )
    secret = api_key_issue_secret(api_key)
    api_key.full_clean()
    api_key.save()
    api_key_audit(api_key=api_key, action="apikey.created", actor=created_by, ip=ip)
    return CreatedKey(api_key=api_key, secret=secret)


def api_key_find(secret: str) -> ApiKey | None:
    """The key (active or revoked) with this secret, with its organization, or None."""
    try:
        kind, prefix, _ = secret.split("_", 2)
    except ValueError:
        return None
    if kind != KEY_PREFIX:
        return None
    api_key = ApiKey.objects.select_related("organization").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, _hash(secret)):
        return None
    return api_key


def api_key_authenticate(secret: str, *, scope: str) -> ApiKey | None:
    """The active key with this secret and scope, or None. Constant-time comparison."""
    api_key = api_key_find(secret)
    if api_key is None or not api_key.has_scope(scope):
        return None
    return api_key


def api_key_revoke(*, api_key: ApiKey, actor=None, ip: str | None = None) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        api_key_audit(api_key=api_key, action="apikey.revoked", actor=actor, ip=ip)
    return api_key


def api_key_audit(*, api_key: ApiKey, action: str, actor=None, ip: str | None = None) -> None:
    """The audit entry of a key created or revoked (its name, prefix and scopes; never the key)."""
    audit_record(
        org=api_key.organization_id,
        actor=actor,
        action=action,
        target=f"{api_key.name} ({api_key.prefix})",
        details={"scopes": list(api_key.scopes)},
        ip=ip,
    )
