"""API errors: one shape, {"detail": "..."}; an unreachable database is a 503 the client may retry."""

from rest_framework.response import Response
from rest_framework.views import exception_handler

from config.outage import DATABASE_ERRORS
from config.unavailable import DB_DOWN, RETRY_AFTER, web_outage


def error_response(message: str, status: int, retry_after: int | None = None) -> Response:
    response = Response({"detail": message}, status=status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def api_exception_handler(exc, context):
    if isinstance(exc, DATABASE_ERRORS):
        web_outage.failed(exc)  # one warning per outage, not a log line per request
        response = error_response(DB_DOWN, 503, retry_after=RETRY_AFTER)
        response._has_been_logged = True
        return response
    return exception_handler(exc, context)
