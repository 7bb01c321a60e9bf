"""API-key authentication (`Authorization: Bearer <key>`), scope permissions and rate limits."""

from __future__ import annotations

import time
from datetime import timedelta

import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions, throttling

from analytics.models import ApiKey
from analytics.redis import get_redis
from analytics.services.api_keys import api_key_find
from analytics.tenancy import get_org_for_user, orgs_for_user

_KEY_CACHE_SECONDS = 2.0
_key_cache: dict[str, tuple[float, ApiKey | None]] = {}


def cached_api_key(secret: str) -> ApiKey | None:
    """api_key_find(), remembered per process for two seconds: a revocation applies within 2 s."""
    now = time.monotonic()
    hit = _key_cache.get(secret)
    if hit is not None and hit[0] > now:
        return hit[1]
    api_key = api_key_find(secret)
    if len(_key_cache) > 10_000:
        _key_cache.clear()
    _key_cache[secret] = (now + _KEY_CACHE_SECONDS, api_key)
    return api_key


def session_org(request, perm: str):
    """The org of a signed-in (session) user's API request: `?org=<slug>`, or their only org;
    404 for an org they are not in, 403 (JSON) when their role lacks `perm` (analytics/roles.py).
    API keys do not come here: their scopes decide."""
    slug = request.query_params.get("org")
    if not slug:
        orgs = orgs_for_user(request.user)
        if len(orgs) != 1:
            raise exceptions.ValidationError({"org": ["Name the organization (?org=<slug>)."]})
        slug = orgs[0].slug
    try:
        return get_org_for_user(request.user, slug, perm=perm)
    except DjangoPermissionDenied as exc:
        raise exceptions.PermissionDenied(str(exc)) from None


def forget_api_key(api_key_id: int) -> None:
    """Drop a key from this process's cache at once (it was just revoked)."""
    for secret, (_, api_key) in list(_key_cache.items()):
        if api_key is not None and api_key.pk == api_key_id:
            _key_cache.pop(secret, None)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a request by API key; `request.auth` is the ApiKey, with its organization."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        kind, _, secret = header.partition(" ")
        if kind != self.keyword or not secret.strip():
            raise exceptions.AuthenticationFailed('Use "Authorization: Bearer <API key>".')
        api_key = cached_api_key(secret.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("Unknown API key.")
        if not api_key.is_active:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > timedelta(minutes=1):
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)  # at most once a minute
            api_key.last_used_at = now
        return (None, api_key)

    def authenticate_header(self, request):
        return self.keyword


class HasScope(permissions.BasePermission):
    """Requires an API key (401 without one) that carries the view's `required_scope` (403)."""

    def has_permission(self, request, view):
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            raise exceptions.NotAuthenticated("An API key is required.")
        if not api_key.has_scope(view.required_scope):
            raise exceptions.PermissionDenied(
                f"This API key lacks the '{view.required_scope}' scope."
            )
        return True


class ApiKeyRateThrottle(throttling.BaseThrottle):
    """A fixed one-second window per key in Redis; if Redis is down, requests are not limited."""

    def allow_request(self, request, view):
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        second = int(timezone.now().timestamp())
        key = f"{settings.LIVE_KEY_PREFIX}:rl:{api_key.pk}:{second}"
        try:
            pipe = get_redis().pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = pipe.execute()
        except redis.RedisError:
            return True
        return count <= settings.INGEST_RATE_LIMIT

    def wait(self):
        return 1
