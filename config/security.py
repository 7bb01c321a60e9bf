"""Response headers every page gets, and how sign-in throttling (django-axes) sees a request."""

from __future__ import annotations

from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

# Browser features the product never uses, switched off for every page.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
    )
)


class SecurityHeadersMiddleware:
    """Permissions-Policy on every response; signed-in pages are never stored by any cache."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not request.path.startswith(settings.STATIC_URL)
        ):
            add_never_cache_headers(response)  # includes no-store
        return response


def client_ip(request) -> str | None:
    """The client address as the proxy-header middleware resolved it (never a raw header)."""
    return request.META.get("REMOTE_ADDR")


class SignInThrottleBackend(AxesStandaloneBackend):
    """Refuses sign-in while locked out; calls without a request (no network client) pass on."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def locked_out(request, original_response=None, credentials=None):
    """The 429 page after too many failed sign-ins, saying when the next try is accepted."""
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    username = get_client_username(request, credentials) or ""
    attempts = AccessAttempt.objects.filter(ip_address=client_ip(request))
    if username:
        attempts = attempts | AccessAttempt.objects.filter(username=username)
    last = attempts.order_by("-attempt_time").values_list("attempt_time", flat=True).first()
    retry_at = (last or timezone.now()) + cool_off
    wait = max(60, int((retry_at - timezone.now()).total_seconds()))
    response = render(
        request,
        "registration/locked_out.html",
        {
            "retry_at": retry_at,
            "minutes": -(-wait // 60),
            "failure_limit": settings.AXES_FAILURE_LIMIT,
        },
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response
