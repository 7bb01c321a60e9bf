"""API errors: one shape, {"detail": "..."}; an unreachable database is a 503 the client may retry."""

from django.db import InterfaceError, OperationalError
from rest_framework.response import Response
from rest_framework.views import exception_handler

DB_DOWN = "The database is unavailable; nothing was stored. Retry later with the same event ids."


def error_response(message: str, status: int, retry_after: int | None = None) -> Response:
    response = Response({"detail": message}, status=status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def api_exception_handler(exc, context):
    if isinstance(exc, OperationalError | InterfaceError):
        return error_response(DB_DOWN, 503, retry_after=5)
    return exception_handler(exc, context)
