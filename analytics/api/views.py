"""REST API views. Org scope comes from the API key, never from the request body."""

from __future__ import annotations

import orjson
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.auth import ApiKeyAuthentication, ApiKeyRateThrottle, HasScope
from analytics.api.errors import error_response
from analytics.services.ingest import EnvelopeError, envelope_events, events_ingest
from analytics.services.ops import ops_count_events


class EventIngestApi(APIView):
    """Ingest a batch of up to 1,000 bot events."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    throttle_classes = [ApiKeyRateThrottle]
    parser_classes: list = []  # the body is read and parsed here, with a size limit
    required_scope = "ingest"

    @extend_schema(
        operation_id="events_ingest",
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiResponse(description="accepted / duplicates / rejected per event"),
            400: OpenApiResponse(description="malformed envelope; nothing stored"),
            401: OpenApiResponse(description="missing, unknown or revoked key"),
            403: OpenApiResponse(description="key without the ingest scope"),
            413: OpenApiResponse(description="body over 5 MB"),
            429: OpenApiResponse(description="too many requests for this key; see Retry-After"),
            503: OpenApiResponse(description="database unavailable; nothing stored; retry"),
        },
        examples=[
            OpenApiExample(
                "one message",
                value={
                    "events": [
                        {
                            "id": "6f1c2f0e-3b1a-4a59-9d2c-0d7c1b1e5a10",
                            "type": "message",
                            "bot": "support-bot",
                            "conversation": "wa-123",
                            "direction": "inbound",
                            "text": "Hi!",
                        }
                    ]
                },
                request_only=True,
            )
        ],
    )
    def post(self, request):
        limit = settings.INGEST_MAX_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return error_response(
                f"The body is {declared:,} bytes; at most {limit:,} are accepted.", 413
            )
        body = request._request.read(limit + 1)
        if len(body) > limit:
            return error_response(f"The body is over {limit:,} bytes.", 413)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return error_response(f"The body is not valid JSON: {exc}.", 400)
        try:
            events = envelope_events(parsed)
            result = events_ingest(org=request.auth.organization, events=events)
        except EnvelopeError as exc:
            return error_response(exc.message, exc.status)
        ops_count_events(
            accepted=result.accepted, duplicates=result.duplicates, rejected=len(result.rejected)
        )
        return Response(result.as_response())
