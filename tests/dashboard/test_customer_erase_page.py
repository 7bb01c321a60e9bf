"""The erase page under Team: an admin finds a customer's data, confirms, and reads the receipt;
a POST needs the CSRF token; roles below admin get 403 and outsiders 404."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from analytics.models import Conversation, CustomerErasure
from dashboard import customer_views
from tests import factories as f
from tests.analytics.services.test_customers import CUSTOMER, OTHER, seed_customer

URL = "/o/acme/customers/erase/"


@pytest.fixture
def seeded(org, bot, settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    seed_customer(org, bot, at=at)
    return org


def _held(org, customer) -> int:
    return Conversation.objects.for_org(org).filter(customer=customer).count()


def test_an_admin_previews_confirms_and_reads_the_receipt(seeded, erin):
    client = Client()
    client.force_login(erin)
    team = client.get("/o/acme/team/").content.decode()
    assert 'id="erase-customer-link"' in team and URL in team
    page = client.get(URL).content.decode()
    assert 'id="erase-form"' in page and "No customer has been erased." in page

    preview = client.post(URL, {"customer": CUSTOMER, "action": "preview"})
    body = preview.content.decode()
    assert preview.status_code == 200
    assert "2 conversations with 12 messages" in body and "1 activity" in body
    assert 'id="erase-confirm-button"' in body
    assert _held(seeded, CUSTOMER) == 2  # nothing goes before the confirmation

    done = client.post(URL, {"customer": CUSTOMER, "action": "erase"})
    body = done.content.decode()
    assert done.status_code == 200
    erasure = CustomerErasure.objects.for_org(seeded).get()
    assert f"Erased (receipt {erasure.pk})" in body
    assert '<td data-kind="messages">12</td>' in body
    assert '<td data-kind="export_files">3</td>' in body
    assert f'id="erasure-{erasure.pk}"' in body and "erin" in body
    assert _held(seeded, CUSTOMER) == 0 and _held(seeded, OTHER) == 2
    assert CUSTOMER not in body.split('id="erasures-title"')[1]  # the history names nobody


def test_a_blank_or_too_long_identifier_is_a_field_error(seeded, erin):
    client = Client()
    client.force_login(erin)
    for value, message in (("", "This field is required."), ("x" * 201, "at most 200")):
        response = client.post(URL, {"customer": value, "action": "erase"})
        assert response.status_code == 400
        assert message in response.content.decode()
    assert not CustomerErasure.objects.exists()


def test_the_erase_needs_the_csrf_token(seeded, erin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(erin)
    response = client.post(URL, {"customer": CUSTOMER, "action": "erase"})
    assert response.status_code == 403
    assert _held(seeded, CUSTOMER) == 2
    token = client.get(URL).cookies["csrftoken"].value
    response = client.post(
        URL, {"customer": CUSTOMER, "action": "erase", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 200
    assert _held(seeded, CUSTOMER) == 0


def test_viewers_and_analysts_get_403_and_outsiders_404(seeded, bob, dave, charlie):
    client = Client()
    for user, status in ((bob, 403), (dave, 403), (charlie, 404)):
        client.force_login(user)
        assert client.get(URL).status_code == status
        assert client.post(URL, {"customer": CUSTOMER, "action": "erase"}).status_code == status
    assert _held(seeded, CUSTOMER) == 2
    assert 'id="erase-customer-link"' not in Client().get("/o/acme/team/").content.decode()


def test_an_admin_of_another_org_erases_only_there(seeded, other_org):
    outsider_admin = f.UserFactory(username="olga")
    f.MembershipFactory(organization=other_org, user=outsider_admin, role="admin")
    client = Client()
    client.force_login(outsider_admin)
    response = client.post(
        f"/o/{other_org.slug}/customers/erase/", {"customer": CUSTOMER, "action": "erase"}
    )
    assert response.status_code == 200
    assert _held(seeded, CUSTOMER) == 2


def test_the_audit_log_shows_the_erasure_without_the_customer(seeded, alice):
    client = Client()
    client.force_login(alice)
    client.post(URL, {"customer": CUSTOMER, "action": "erase"})
    page = client.get("/o/acme/audit/").content.decode()
    assert "Customer data erased" in page
    assert "<span>messages: 12</span>" in page and "<span>conversations: 2</span>" in page
    assert CUSTOMER not in page


def test_the_receipt_says_what_arrived_during_the_erasure_and_was_kept(seeded, erin, monkeypatch):
    real = customer_views.customer_erase

    def erase_while_events_arrive(**kwargs):
        # What the concurrent test (tests/analytics/api/test_customers_erase_concurrent.py)
        # produces for real: rows received after the cut-off, still held when it committed.
        kept = {"conversations": 1, "messages": 3, "activities": 1, "conversation_metrics": 0}
        return replace(real(**kwargs), kept_after=kept)

    monkeypatch.setattr(customer_views, "customer_erase", erase_while_events_arrive)
    client = Client()
    client.force_login(erin)
    body = client.post(URL, {"customer": CUSTOMER, "action": "erase"}).content.decode()
    assert (
        "Received while the erasure ran, so kept: 1 conversation, 3 messages and 1 activity."
        in body
    )
    monkeypatch.setattr(customer_views, "customer_erase", real)
    quiet = client.post(URL, {"customer": OTHER, "action": "erase"}).content.decode()
    assert 'id="erase-receipt"' in quiet and 'id="receipt-kept"' not in quiet
