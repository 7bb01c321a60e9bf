"""The OpenAPI schema at /api/schema/ tells the truth about statuses and bodies."""

from __future__ import annotations

import pytest
import yaml
from django.test import Client

from analytics.services.api_keys import api_key_create

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
    response = Client().post("/api/v1/events", b"", content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {key}")  # fmt: skip
    assert response.status_code == 400


def test_it_rejects_a_format_outside_the_schema_enum_with_400(org):
    key = api_key_create(organization=org, name="r", scopes="read").secret
    response = Client().get("/api/v1/conversations/?format=xml", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 400, response.content
    assert "format" in response.json()
