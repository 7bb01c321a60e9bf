"""Input no view should ever see: a NUL anywhere in the URL.

PostgreSQL text cannot hold NUL, so a NUL that reaches a query is a 500. A NUL in the path
names nothing (404); in the query string it is the client's error (400). API paths answer in
the API's JSON shape, pages in plain text.
"""

from __future__ import annotations

from urllib.parse import unquote

from django.http import HttpResponse, JsonResponse


class InputGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path:
            return _answer(request, 404, "Not found.")
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in unquote(query):
            return _answer(request, 400, "The query string must not contain NUL (%00) characters.")
        return self.get_response(request)


def _answer(request, status: int, detail: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": detail}, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")
