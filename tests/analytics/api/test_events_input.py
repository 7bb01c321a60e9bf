"""POST /api/v1/events with hostile input: per-event field errors, the good events stored, and a
clear JSON 400 for a body that is not an object -- never an HTML 500, never a lost batch."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.models import Conversation, Message
from tests.analytics.api.test_events_api import conversation_batch, eid, key, post  # noqa: F401

pytestmark = pytest.mark.usefixtures("bot")


def test_it_rejects_a_nul_in_a_text_field_by_name_and_stores_the_rest(client, org, key):  # noqa: F811
    batch = conversation_batch()
    batch[1]["text"] = "hello\x00world"
    response = post(client, key, {"events": batch})
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert "NUL" in rejected["errors"]["text"]
    assert Message.objects.for_org(org).count() == 1


def test_it_rejects_a_list_or_object_where_a_choice_is_expected(client, org, key):  # noqa: F811
    batch = conversation_batch()
    batch[0]["channel"] = ["whatsapp"]
    batch[1]["direction"] = {"in": True}
    batch[2]["customer"] = ["Ana"]
    response = post(client, key, {"events": batch})
    assert response.status_code == 200
    errors = {r["index"]: r["errors"] for r in response.json()["rejected"]}
    assert set(errors) == {0, 1, 2}
    assert "channel" in errors[0] and "direction" in errors[1] and "customer" in errors[2]


def test_it_rejects_a_nul_in_the_conversation_id(client, org, key):  # noqa: F811
    batch = conversation_batch(conv="wa\x001")
    response = post(client, key, {"events": batch})
    assert response.status_code == 200
    assert len(response.json()["rejected"]) == 3
    assert not Conversation.objects.for_org(org).exists()


@pytest.mark.parametrize("body", ["[1, 2, 3]", '"events"', "null", "42", "true", "", "{"])
def test_it_answers_a_body_that_is_not_an_object_with_a_json_400(client, key, body):  # noqa: F811
    response = post(client, key, body)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]


json_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    # NaN and Infinity are not JSON: a body holding them is refused whole (400), as it should be.
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "id",
    "type",
    "bot",
    "conversation",
    "customer",
    "channel",
    "direction",
    "text",
    "response_time_ms",
    "outcome",
    "tokens",
    "cost_usd",
    "kb_hit",
    "status",
    "csat",
    "kind",
    "value",
    "name",
    "timestamp",
    "campaign",
    "handoff",
    "call_outcome",
]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    field=st.sampled_from(FIELDS),
    junk=json_junk | st.sampled_from(["\x00", "a\x00b", 10**30, -(10**30), 1e308, "NaN"]),
    kind=st.sampled_from(["conversation.started", "message", "conversation.ended", "activity"]),
)
def test_it_never_answers_500_to_junk_in_any_field(org, key, field, junk, kind):  # noqa: F811
    event = {
        "id": eid(),
        "type": kind,
        "bot": "support-bot",
        "conversation": "wa-9",
        "direction": "inbound",
        "status": "resolved",
        "kind": "booking",
        field: junk,
    }
    good = conversation_batch(conv="wa-good")[0]
    body = json.dumps({"events": [event, good]}, allow_nan=True)
    response = post(Client(raise_request_exception=False), key, body)
    assert response.status_code == 200, response.content[:300]
    assert response.json()["accepted"] + response.json()["duplicates"] >= 1
