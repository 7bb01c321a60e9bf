"""POST /api/v1/customers/erase and GET /api/v1/customers/export: admin-scoped keys or admin
members only, field errors for bad input, and never another org's data."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml
from django.db import connection
from django.test import Client
from rest_framework.renderers import JSONRenderer

from analytics.api.customers import CustomerExportSerializer
from analytics.bulk import MESSAGE_COLUMNS, copy_rows
from analytics.models import AuditEvent, Conversation, CustomerErasure, Message
from analytics.services.api_keys import api_key_create
from analytics.services.customers import customer_export
from tests import factories as f
from tests.analytics.services.test_customers import CUSTOMER, OTHER, seed_customer

ERASE, EXPORT = "/api/v1/customers/erase", "/api/v1/customers/export"


@pytest.fixture
def seeded(org, other_org, bot, settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    seed_customer(org, bot, at=at, exports=False)
    seed_customer(other_org, f.BotFactory(organization=other_org, slug="support-bot"), at=at)
    return org


def _key(org, scopes: str) -> str:
    return api_key_create(organization=org, name=f"key-{scopes}", scopes=scopes).secret


def _post(key: str | None, body, client=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return (client or Client()).post(ERASE, body, content_type="application/json", **headers)


def _document(response) -> dict:
    """The streamed export, parsed."""
    return json.loads(b"".join(response.streaming_content))


def _held(org, customer) -> int:
    return Conversation.objects.for_org(org).filter(customer=customer).count()


def test_an_admin_key_erases_and_gets_the_receipt(seeded, other_org):
    response = _post(_key(seeded, "admin"), {"customer": CUSTOMER})
    assert response.status_code == 200, response.content
    receipt = response.json()
    assert receipt["counts"]["conversations"] == 2
    assert receipt["counts"]["messages"] == 12
    assert receipt["counts"]["activities"] == 1
    assert receipt["counts"]["conversation_metrics"] == 2
    assert receipt["counts"]["live_feed_entries"] >= 1
    assert receipt["counts"]["export_files"] == 0
    assert receipt["erasure_id"] == CustomerErasure.objects.for_org(seeded).get().pk
    assert "received after that are kept" in receipt["covers"]
    assert receipt["erased_at"]
    assert _held(seeded, CUSTOMER) == 0 and _held(seeded, OTHER) == 2
    assert _held(other_org, CUSTOMER) == 2  # another org's customer of the same name
    audit = AuditEvent.objects.for_org(seeded).get(action="customer.erased")
    assert audit.actor_label.startswith("API key ")
    assert CUSTOMER not in str(audit.details) and CUSTOMER not in audit.target


def test_an_unknown_customer_gets_zero_counts(seeded):
    response = _post(_key(seeded, "admin"), {"customer": "nobody@example.com"})
    assert response.status_code == 200
    assert set(response.json()["counts"].values()) == {0}


def test_a_key_without_the_admin_scope_is_refused_and_nothing_goes(seeded):
    response = _post(_key(seeded, "ingest,read,alerts"), {"customer": CUSTOMER})
    assert response.status_code == 403
    assert response.json() == {"detail": "This API key lacks the 'admin' scope."}
    read = Client().get(
        EXPORT, {"customer": CUSTOMER}, HTTP_AUTHORIZATION=f"Bearer {_key(seeded, 'read')}"
    )
    assert read.status_code == 403
    assert _held(seeded, CUSTOMER) == 2
    assert not CustomerErasure.objects.exists()


def test_without_a_key_it_is_401(seeded):
    assert _post(None, {"customer": CUSTOMER}).status_code in (401, 403)
    assert _held(seeded, CUSTOMER) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "This field is required."),
        ({"customer": ""}, "This field may not be blank."),
        ({"customer": "   "}, "This field may not be blank."),
        ({"customer": "x" * 201}, "Ensure this field has no more than 200 characters."),
        ({"customer": ["+27"]}, "Not a valid string."),
        ({"customer": "a\x00b"}, "Null characters are not allowed."),
    ],
)
def test_bad_input_is_a_400_naming_the_field(seeded, body, message):
    response = _post(_key(seeded, "admin"), body)
    assert response.status_code == 400
    assert response.json() == {"customer": [message]}
    assert not CustomerErasure.objects.exists()


def test_members_erase_as_the_role_matrix_says(seeded, alice, bob, erin, charlie):
    client = Client()
    client.force_login(bob)  # a viewer
    response = _post(None, {"customer": CUSTOMER}, client)
    assert response.status_code == 403, response.content
    client.force_login(charlie)  # an outsider
    response = client.post(
        f"{ERASE}?org=acme", {"customer": CUSTOMER}, content_type="application/json"
    )
    assert response.status_code == 404
    assert _held(seeded, CUSTOMER) == 2
    client.force_login(erin)  # an admin
    response = client.post(
        f"{ERASE}?org=acme", {"customer": CUSTOMER}, content_type="application/json"
    )
    assert response.status_code == 200
    assert _held(seeded, CUSTOMER) == 0
    assert CustomerErasure.objects.for_org(seeded).get().requested_by == erin


def test_a_session_post_needs_the_csrf_token(seeded, erin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(erin)
    response = client.post(
        f"{ERASE}?org=acme", {"customer": CUSTOMER}, content_type="application/json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert _held(seeded, CUSTOMER) == 2


def test_the_export_returns_what_is_held(seeded, other_org):
    key = _key(seeded, "admin")
    response = Client().get(EXPORT, {"customer": CUSTOMER}, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = _document(response)
    assert data["customer"] == CUSTOMER and data["organization"] == "acme"
    assert data["counts"] == {
        "conversations": 2,
        "messages": 12,
        "activities": 1,
        "conversation_metrics": 2,
    }
    conversations = data["conversations"]
    assert {c["external_id"] for c in conversations} == {"c-0", "c-1"}
    texts = [m["text"] for c in conversations for m in c["messages"]]
    assert texts.count(f"Sure, we will call {CUSTOMER}") == 6
    assert set(
        Message.objects.for_org(seeded).filter(text__in=texts).values_list("text", flat=True)
    )
    assert conversations[0]["metrics"]["total_messages"] == 6
    assert data["activities"][0]["description"] == f"Booked a call with {CUSTOMER}"
    assert data["activities"][0]["value"] == "50.00"
    # Only this org's rows, though the other org has a customer of the same name.
    ids = {c["id"] for c in conversations}
    assert ids == set(
        Conversation.objects.for_org(seeded).filter(customer=CUSTOMER).values_list("pk", flat=True)
    )
    audit = AuditEvent.objects.for_org(seeded).get(action="customer.exported")
    assert CUSTOMER not in str(audit.details)


def test_the_export_names_a_missing_customer(seeded):
    key = _key(seeded, "admin")
    response = Client().get(EXPORT, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 400
    assert response.json() == {"customer": ["This field is required."]}


def test_members_export_as_the_role_matrix_says(seeded, bob, dave, alice, charlie):
    client = Client()
    for user, status in ((bob, 403), (dave, 403), (charlie, 404), (alice, 200)):
        client.force_login(user)
        response = client.get(EXPORT, {"customer": CUSTOMER, "org": "acme"})
        assert response.status_code == status, (user, response.content)
    assert len(_document(response)["conversations"]) == 2


def test_the_schema_documents_both_routes(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    erase = schema["paths"]["/api/v1/customers/erase"]["post"]
    assert erase["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Customer"
    )
    assert {"200", "400", "401", "403", "404"} <= set(erase["responses"])
    export = schema["paths"]["/api/v1/customers/export"]["get"]
    params = {p["name"]: p for p in export["parameters"]}
    assert params["customer"]["required"] is True
    assert params["customer"]["schema"]["maxLength"] == 200
    # Streamed, and documented as the document it is.
    body = export["responses"]["200"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/CustomerExport")
    receipt = schema["components"]["schemas"]["Receipt"]["properties"]
    assert {"erased_at", "kept_after", "covers"} <= set(receipt)


def test_the_streamed_export_is_the_document_the_serializer_describes(seeded):
    key = _key(seeded, "admin")
    response = Client().get(EXPORT, {"customer": CUSTOMER}, HTTP_AUTHORIZATION=f"Bearer {key}")
    streamed = _document(response)
    whole = customer_export(org=seeded, customer=CUSTOMER)
    expected = json.loads(JSONRenderer().render(CustomerExportSerializer(whole).data))
    streamed.pop("generated_at"), expected.pop("generated_at")
    assert streamed == expected
    assert streamed["conversations"][0]["messages"][1]["cost_usd"] == "0.000000"
    nobody = _document(
        Client().get(EXPORT, {"customer": "nobody"}, HTTP_AUTHORIZATION=f"Bearer {key}")
    )
    assert (nobody["conversations"], nobody["activities"]) == ([], [])
    assert set(nobody["counts"].values()) == {0}


MANY = 40_000


def test_a_customer_with_many_messages_is_exported_whole_without_holding_them(org, bot, tmp_path):
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    conversations = [
        f.ConversationFactory(
            organization=org,
            bot=bot,
            customer=CUSTOMER,
            external_id=f"m-{n}",
            started_at=at + timedelta(minutes=n),
        )
        for n in range(4)
    ]
    f.ConversationFactory(organization=org, bot=bot, customer=OTHER, external_id="theirs")
    with connection.cursor() as cursor:
        copy_rows(
            cursor.cursor,
            Message._meta.db_table,
            MESSAGE_COLUMNS,
            (
                (
                    org.pk,
                    bot.pk,
                    conversations[i % 4].pk,
                    "inbound",
                    f"message {i:06} " + "x" * 200,
                    at + timedelta(seconds=i),
                    None,
                    "",
                    i % 7,
                    Decimal("0.000100"),
                    None,
                )
                for i in range(MANY)
            ),
        )
    key = _key(org, "admin")
    response = Client().get(EXPORT, {"customer": CUSTOMER}, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    body = tmp_path / "export.json"
    tracemalloc.start()
    try:
        with open(body, "wb") as out:
            for chunk in response.streaming_content:
                out.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = body.stat().st_size
    assert size > MANY * 200
    # Rows are rendered a few thousand at a time: far below the document (or its rows as dicts).
    assert peak < size / 4, (peak, size)
    data = json.loads(body.read_bytes())
    assert data["counts"]["messages"] == MANY and data["counts"]["conversations"] == 4
    assert [c["external_id"] for c in data["conversations"]] == ["m-0", "m-1", "m-2", "m-3"]
    for n, c in enumerate(data["conversations"]):
        texts = [m["text"][:14] for m in c["messages"]]
        assert texts == [f"message {i:06}" for i in range(n, MANY, 4)]
    last = data["conversations"][3]["messages"][-1]
    assert last["tokens"] == (MANY - 1) % 7 and last["cost_usd"] == "0.000100"
    assert last["created_at"] == (at + timedelta(seconds=MANY - 1)).isoformat().replace(
        "+00:00", "Z"
    )


def test_a_key_acts_in_its_own_org_whatever_org_the_query_names(seeded, other_org):
    key = _key(seeded, "admin")
    export = Client().get(
        EXPORT, {"customer": CUSTOMER, "org": "globex"}, HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert _document(export)["organization"] == "acme"
    response = Client().post(
        f"{ERASE}?org=globex",
        {"customer": CUSTOMER},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 200
    assert _held(seeded, CUSTOMER) == 0
    assert _held(other_org, CUSTOMER) == 2
    assert not CustomerErasure.objects.for_org(other_org).exists()
