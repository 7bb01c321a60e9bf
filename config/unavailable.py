"""A database outage seen from the web: a clear "temporarily unavailable, retrying" answer (503
with Retry-After), never a 500 with a traceback per request.

Pages get templates/503.html (it reloads itself); the API answers its usual `{"detail": ...}`
(analytics.api.errors for DRF views, here for anything outside them). The process logs one
warning when the outage starts and one line when a request succeeds again (config.outage).
"""

from __future__ import annotations

import sys

from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

from config.outage import DATABASE_ERRORS, Outage

RETRY_AFTER = 5  # seconds
DB_DOWN = "The database is unavailable; nothing was stored. Retry later with the same event ids."

web_outage = Outage("web")


def database_unavailable(request, exc: BaseException) -> HttpResponse:
    """The 503 answer to a request that met a database outage (logged once per outage)."""
    web_outage.failed(exc)
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": DB_DOWN}, status=503)
    else:
        # Rendered without the request: its context processors would ask the database again.
        response = HttpResponse(
            render_to_string("503.html", {"retry_after": RETRY_AFTER}), status=503
        )
    response["Retry-After"] = str(RETRY_AFTER)
    response._has_been_logged = True  # not one "Service Unavailable" line per request
    return response


def server_error(request):
    """handler500: a database outage met anywhere (a view, a middleware reading the session) is a
    503; anything else is Django's usual 500 page."""
    exc = sys.exc_info()[1]
    if isinstance(exc, DATABASE_ERRORS):
        return database_unavailable(request, exc)
    return defaults.server_error(request)


class DatabaseUnavailableMiddleware:
    """Turns a view's database outage into the 503 answer (also under DEBUG, where handler500 is
    not used), and notes the outage's end at the first request that gets through."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if web_outage.down and response.status_code < 500:
            web_outage.ok()
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_ERRORS):
            return database_unavailable(request, exception)
        return None
