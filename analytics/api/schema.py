"""drf-spectacular postprocessing: the schema lists every status a route can answer.

Every API route may answer 400 (a bad query parameter or body), 401 (no or an unknown key), 403
(a key without the scope), 404 (not in your org, an unknown slug, a NUL in the path) and 503
(the database is unreachable); the views document their success shapes and any extra statuses
(413 and 429 on ingestion) themselves.
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}
EVENTS_BODY = {
    "type": "object",
    "required": ["events"],
    "properties": {"events": {"type": "array", "maxItems": 1000, "items": {"type": "object"}}},
}
COMMON = {
    "400": "Invalid input: {field: [message]} or {detail: message}",
    "401": "No, an unknown or a revoked API key",
    "403": "An API key without the scope this route needs",
    "404": "Not found in your organization",
    "503": "The database is unavailable; retry later",
}


def document_errors(result, generator, request, public):
    """Add the common error statuses to every /api/ operation; mark a required body required."""
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if schema.get("type") in ("integer", "number") and "enum" in schema:
                    # django-filter's ChoiceFilter lists numeric choices as strings ("5").
                    schema["enum"] = [int(v) if str(v).isdigit() else v for v in schema["enum"]]
                if parameter.get("in") == "query" and schema.get("type") == "string":
                    schema.setdefault("minLength", 1)  # an empty value is a 400 (ReadApi)
                    if "enum" not in schema and "format" not in schema:
                        schema.setdefault("pattern", "^[^\\x00]*$")  # a NUL is a 400 (input_guard)
            responses = operation.setdefault("responses", {})
            for status, description in COMMON.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_SCHEMA}},
                    },
                )
            if operation.get("operationId") == "events_ingest":
                # The view reads the body itself (no parser), so drf-spectacular sees none.
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": EVENTS_BODY}},
                }
    return result
