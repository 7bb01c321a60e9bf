"""The OpenAPI schema at /api/schema/ tells the truth about statuses and bodies."""

from __future__ import annotations

import pytest
import yaml
from django.test import Client

from analytics.services.api_keys import api_key_create
from tests.analytics.api.schemathesis_hooks import is_inexpressible_refusal

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_it_documents_every_error_status_of_every_api_route(schema):
    operations = [
        (path, method, op)
        for path, ops in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in ops.items()
    ]
    assert len(operations) > 10
    for path, method, op in operations:
        assert {"400", "401", "403", "404", "503"} <= set(op["responses"]), (path, method)
    events = schema["paths"]["/api/v1/events"]["post"]
    assert {"413", "429"} <= set(events["responses"])


def test_it_marks_the_events_body_required(schema, org):
    assert schema["paths"]["/api/v1/events"]["post"]["requestBody"]["required"] is True
    key = api_key_create(organization=org, name="i", scopes="ingest").secret
    response = Client().post(
        "/api/v1/events", b"", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code == 400


def test_it_rejects_a_format_outside_the_schema_enum_with_400(org):
    key = api_key_create(organization=org, name="r", scopes="read").secret
    response = Client().get("/api/v1/conversations/?format=xml", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 400, response.content
    assert "format" in response.json()


def _params(schema, path):
    return {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}


def test_it_states_what_the_read_api_accepts(schema):
    # A schema-valid request gets a 2xx (schemathesis' positive_data_acceptance holds it to that),
    # so each query parameter carries its real type, format and bounds.
    conversations = _params(schema, "/api/v1/conversations/")
    for name in ("start", "end"):
        branches = conversations[name]["schema"]["anyOf"]
        assert [b["format"] for b in branches] == ["date", "date-time"], name
        assert "retention limit" in conversations[name]["description"]
    for name in ("bot", "campaign"):
        assert conversations[name]["schema"]["pattern"] == "^[-a-zA-Z0-9_]+$"
        assert conversations[name]["schema"]["maxLength"] == 60
        assert "404" in conversations[name]["description"]
    assert conversations["csat"]["schema"]["type"] == "integer"
    assert conversations["csat"]["schema"]["enum"] == [1, 2, 3, 4, 5]
    assert conversations["handoff"]["schema"] == {"type": "boolean"}
    page_size = conversations["page_size"]["schema"]
    assert (page_size["type"], page_size["minimum"], page_size["maximum"]) == ("integer", 1, 500)
    assert conversations["q"]["schema"]["maxLength"] == 200
    assert conversations["q"]["schema"]["pattern"] == "^[^\\x00!&()*:<>\\\\|]*$"
    assert conversations["customer"]["schema"]["maxLength"] == 200
    assert "next" in conversations["cursor"]["description"]
    for path in ("/api/v1/bots/{slug}/performance", "/api/v1/campaigns/{slug}/metrics"):
        dates = _params(schema, path)
        assert dates["start_date"]["schema"]["format"] == "date", path
        assert dates["end_date"]["schema"]["format"] == "date", path
        assert "retention limit" in dates["end_date"]["description"], path
    series = _params(schema, "/api/v1/analytics/response-times")
    assert series["bot"]["schema"]["pattern"] == "^[-a-zA-Z0-9_]+$"


def test_the_fuzz_hooks_let_through_only_the_rules_a_schema_cannot_state():
    # schemathesis_hooks.py decides which 400s to a schema-valid request are not failures.
    cross_field = b'{"end": ["The end must be after the start."]}'
    assert is_inexpressible_refusal(400, cross_field)
    assert is_inexpressible_refusal(400, b'{"end_date": ["The range is past retention."]}')
    assert is_inexpressible_refusal(400, b'{"cursor": ["Invalid cursor."]}')
    assert not is_inexpressible_refusal(404, cross_field)
    assert not is_inexpressible_refusal(400, b'{"csat": ["Select a valid choice."]}')
    mixed = b'{"end": ["The end must be after the start."], "q": ["Ensure this value..."]}'
    assert not is_inexpressible_refusal(400, mixed)
    assert not is_inexpressible_refusal(400, b'{"end": ["Enter a valid date (YYYY-MM-DD)."]}')
    assert not is_inexpressible_refusal(400, b'{"detail": "Invalid cursor."}')
    assert not is_inexpressible_refusal(400, b"<html>Bad Request</html>")
