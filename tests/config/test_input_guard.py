"""Hostile input anywhere in a request is a clear 4xx, never a 500: NUL bytes, forged cursors,
absurd page numbers and sizes, unknown slugs and off-site `next` redirects."""

from __future__ import annotations

import base64

import pytest
from django.test import Client

from analytics.services.api_keys import api_key_create
from tests import factories as f

pytestmark = pytest.mark.django_db(transaction=True)  # a failed query must not hide the next one


@pytest.fixture
def api(org, bot):
    key = api_key_create(organization=org, name="reader", scopes="read").secret
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {key}")
    f.ConversationFactory(bot=bot)
    return client


@pytest.fixture
def member(alice):
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    return client


def cursor(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    "value",
    ["zzzz", cursor("p=2026-01"), cursor("p=not a time&r=1")],
)
def test_it_answers_a_forged_cursor_with_a_json_400(api, value):
    response = api.get("/api/v1/conversations/", {"cursor": value})
    assert response.status_code == 400
    assert response.json() == {"cursor": ["Invalid cursor."]}


@pytest.mark.parametrize("path", ["/o/ac%00me/", "/api/v1/bots/a%00b/performance", "/%00"])
def test_it_answers_a_nul_in_the_path_with_404(api, path):
    response = api.get(path)
    assert response.status_code == 404


def test_it_answers_a_nul_in_the_query_string_with_400(api, member, org):
    response = api.get("/api/v1/analytics/realtime?x=a%00b")
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
    page = member.get(f"/o/{org.slug}/conversations/?status=a%00b")
    assert page.status_code == 400
    assert b"NUL" in page.content


def test_it_shows_the_first_page_for_an_absurd_page_number(member, org):
    response = member.get(f"/o/{org.slug}/conversations/?page=99999999999999999999")
    assert response.status_code == 200
    assert "showing the first page" in response.content.decode()


@pytest.mark.parametrize("size", ["99999999999999999999", "0", "-1", "501", "ten", ""])
def test_it_answers_a_bad_page_size_with_400_naming_it(api, size):
    response = api.get("/api/v1/conversations/", {"page_size": size})
    assert response.status_code == 400
    assert "page_size" in response.json()


def test_it_answers_an_unknown_bot_slug_with_404(api):
    response = api.get("/api/v1/analytics/response-times", {"bot": "no-such-bot"})
    assert response.status_code == 404
    assert "no-such-bot" in response.json()["detail"]


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example/", "https:evil.example"]
)
def test_it_follows_next_only_to_paths_of_this_site(alice, target):
    client = Client()
    response = client.post(
        f"/accounts/login/?next={target}", {"username": "alice", "password": "pw-botflow-123"}
    )
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\"))
    assert "evil.example" not in location
