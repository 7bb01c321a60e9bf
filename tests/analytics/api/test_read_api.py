"""The read API under /api/v1/: figures and rows a client gets, bad input, and org scoping."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from analytics import sketch
from analytics.services.api_keys import api_key_create
from tests import factories as f

NOW = timezone.now()


@pytest.fixture
def read_key(org):
    return api_key_create(organization=org, name="reader", scopes="read").secret


@pytest.fixture
def ingest_key(org):
    return api_key_create(organization=org, name="ingester", scopes="ingest").secret


@pytest.fixture
def outsider_key(other_org):
    return api_key_create(organization=other_org, name="reader", scopes="read").secret


def get(client, url, key=None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.get(url, **headers, **extra)


@pytest.fixture
def data(org, bot, other_org):
    winter = f.CampaignFactory(organization=org, slug="winter", name="Winter", bot=bot)
    convs = []
    for i in range(5):
        c = f.ConversationFactory(
            bot=bot,
            customer=f"Customer {i}",
            started_at=NOW - timedelta(hours=i + 1),
            campaign=winter if i % 2 == 0 else None,
            call_outcome="answered" if i % 2 == 0 else "",
        )
        f.MessageFactory(
            conversation=c, text="refund" if i == 3 else "hello", created_at=c.started_at
        )
        convs.append(c)
    f.ConversationMetricsFactory(conversation=convs[0], total_messages=4, cost_usd=Decimal("1.5"))
    hour = (NOW - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    f.BotHourlyRollupFactory(
        bot=bot,
        hour=hour,
        messages_in=10,
        messages_out=10,
        successes=8,
        failures=2,
        response_count=10,
        response_sum_ms=5000,
        response_hist={"313": 10},
    )
    f.BotHourlyRollupFactory(
        bot=bot,
        hour=hour - timedelta(days=7),
        messages_in=5,
        messages_out=5,
        successes=5,
        response_count=5,
        response_sum_ms=5000,
        response_hist={"347": 5},
    )
    foreign_bot = f.BotFactory(organization=other_org, slug="globex-bot")
    foreign = f.ConversationFactory(bot=foreign_bot, started_at=NOW)
    f.CampaignFactory(organization=other_org, slug="globex-camp")
    return {"convs": convs, "foreign": foreign, "winter": winter}


def test_it_lists_conversations_newest_first_with_cursor_pages(client, read_key, data):
    response = get(client, "/api/v1/conversations/?page_size=2", read_key)
    assert response.status_code == 200
    body = response.json()
    ids = [c["id"] for c in body["results"]]
    assert ids == [data["convs"][0].pk, data["convs"][1].pk]
    assert body["results"][0]["metrics"]["cost_usd"] == 1.5
    assert body["results"][1]["metrics"] is None
    seen = list(ids)
    url = body["next"]
    while url:
        page = get(client, url, read_key).json()
        seen += [c["id"] for c in page["results"]]
        url = page["next"]
    assert seen == [c.pk for c in data["convs"]]
    assert data["foreign"].pk not in seen


def test_it_filters_and_searches_like_the_page(client, read_key, data):
    body = get(client, "/api/v1/conversations/?q=refund", read_key).json()
    assert [c["id"] for c in body["results"]] == [data["convs"][3].pk]
    empty = get(client, "/api/v1/conversations/?q=refund&campaign=", read_key)
    assert empty.status_code == 400 and empty.json() == {"campaign": ["Must not be empty."]}
    body = get(client, "/api/v1/conversations/?campaign=winter&call_outcome=answered", read_key)
    assert [c["id"] for c in body.json()["results"]] == [data["convs"][i].pk for i in (0, 2, 4)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=not-a-date", "start"),
        ("start=2026-11-20&end=2026-11-01", "end"),
        ("start=2026-02-30", "start"),
        ("end=2026-11-20T25:00:00Z", "end"),
        ("end=0001-01-03", "end"),  # the range before it lies before retention (was: overflow)
        ("bot=not%20a%20slug", "bot"),
        ("campaign=caf%C3%A9!", "campaign"),
        ("q=" + "y" * 5000, "q"),
        ("q=a %26 b", "q"),
        ("customer=" + "c" * 201, "customer"),
        ("channel=fax", "channel"),
        ("csat=6", "csat"),
        ("page_size=501", "page_size"),
        ("cursor=forged", "cursor"),
    ],
)
def test_it_answers_bad_filters_with_400_and_field_errors(client, read_key, data, query, field):
    response = get(client, f"/api/v1/conversations/?{query}", read_key)
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize(
    ("query", "field"),
    [("bot=nope", "bot"), ("bot=globex-bot", "bot"), ("campaign=globex-camp", "campaign")],
)
def test_an_unknown_or_foreign_slug_filter_is_a_404_naming_the_field(
    client, read_key, data, query, field
):
    # A well-formed slug that names nothing in the org: "not found", as /bots/<slug>/ answers,
    # in JSON and CSV alike; another org's slug reads the same as one that does not exist.
    for url in (f"/api/v1/conversations/?{query}", f"/api/v1/conversations/?{query}&format=csv"):
        response = get(client, url, read_key)
        assert response.status_code == 404, url
        body = response.json()
        assert body[field] == [
            f"Unknown {field}: {query.split('=')[1]} (not in this organization)."
        ]
        assert body["detail"] == body[field][0]
    series = get(client, "/api/v1/analytics/response-times?bot=globex-bot", read_key)
    assert series.status_code == 404 and series.json()["bot"] == [
        "Unknown bot: globex-bot (not in this organization)."
    ]


@pytest.mark.parametrize(
    "query",
    [
        # RFC 3339 allows offsets up to 23:59, PostgreSQL only up to 15:59 (was a 400 "cursor")
        "start=2000-01-01T00:00:00%2B23:59&end=2100-01-01T00:00:00-23:59",
        "start=2000-01-01&end=9999-12-31",  # through the last day (was a 400 "Enter a valid date")
        "start=0001-01-01T00:00:00%2B05:00",  # before Python's year 1 in UTC: clamped, a notice
        "start=2000-01-01&end=9999-12-31T23:59:59.123456-23:59",  # past Python's last year in UTC
    ],
)
def test_it_accepts_every_date_and_date_time_the_schema_allows(client, read_key, data, query):
    response = get(client, f"/api/v1/conversations/?{query}", read_key)
    assert response.status_code == 200, response.content
    assert {c["id"] for c in response.json()["results"]} == {c.pk for c in data["convs"]}


def test_it_exports_the_filtered_list_as_csv(client, read_key, data):
    for kwargs in ({"HTTP_ACCEPT": "text/csv"}, {}):
        url = "/api/v1/conversations/?campaign=winter" + ("" if kwargs else "&format=csv")
        response = get(client, url, read_key, **kwargs)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [int(r["id"]) for r in rows] == [data["convs"][i].pk for i in (0, 2, 4)]
    bots = get(client, "/api/v1/bots/?format=csv", read_key)
    assert bots.content.decode().splitlines()[0].startswith("slug,name,kind")


def test_it_returns_a_conversation_with_messages_and_404s_a_foreign_one(client, read_key, data):
    body = get(client, f"/api/v1/conversations/{data['convs'][3].pk}/", read_key).json()
    assert body["messages"][0]["text"] == "refund" and body["messages_truncated"] is False
    assert get(client, f"/api/v1/conversations/{data['foreign'].pk}/", read_key).status_code == 404


def test_bot_performance_compares_with_the_days_before(client, read_key, data):
    today = timezone.now().date()
    start = (today - timedelta(days=6)).isoformat()
    body = get(client, f"/api/v1/bots/support-bot/performance?start_date={start}", read_key).json()
    assert body["current"]["messages_in"] == 10 and body["previous"]["messages_in"] == 5
    assert body["current"]["success_rate"] == 80.0 and body["previous"]["success_rate"] == 100.0
    assert body["change_percent"]["messages_in"] == 100.0
    assert body["current"]["avg_ms"] == 500.0


@pytest.mark.parametrize(
    "query", ["start_date=2026-02-30", "start_date=2026-11-20&end_date=2026-11-01", "end_date=x"]
)
def test_bot_performance_rejects_bad_dates(client, read_key, data, query):
    response = get(client, f"/api/v1/bots/support-bot/performance?{query}", read_key)
    assert response.status_code == 400
    assert set(response.json()) & {"start_date", "end_date"}


def test_percentiles_and_series(client, read_key, data):
    body = get(client, "/api/v1/bots/support-bot/percentiles?period=24h", read_key).json()
    assert body["p95_ms"] == pytest.approx(sketch.bucket_value(313))  # every reply in bucket 313
    assert len(body["points"]) == 24
    rt = get(client, "/api/v1/analytics/response-times?period=24h&bot=support-bot", read_key)
    assert sum(p["responses"] for p in rt.json()["points"]) == 10
    volume = get(client, "/api/v1/analytics/message-volume?period=7d", read_key).json()
    assert sum(p["inbound"] for p in volume["points"]) == 10
    bad = get(client, "/api/v1/analytics/response-times?period=1y&bot=support-bot", read_key)
    assert bad.status_code == 400 and set(bad.json()) == {"period"}
    unknown = get(client, "/api/v1/analytics/response-times?period=24h&bot=nope", read_key)
    assert unknown.status_code == 404  # an unknown slug names nothing, as in a path (issue 11)


def test_campaign_metrics_realtime_health_and_lists(client, read_key, data):
    body = get(client, "/api/v1/campaigns/winter/metrics", read_key).json()
    assert body["current"]["attempts"] == 3 and body["current"]["answer_rate"] == 100.0
    assert [c["slug"] for c in get(client, "/api/v1/campaigns/", read_key).json()] == ["winter"]
    assert [b["slug"] for b in get(client, "/api/v1/bots/", read_key).json()] == ["support-bot"]
    assert get(client, "/api/v1/analytics/realtime", read_key).json()["active_now"] >= 0
    assert get(client, "/api/v1/system/health", read_key).json()["status"] == "ok"


def test_a_signed_in_member_reads_with_the_session(client, bob, data):
    client.force_login(bob)
    assert get(client, "/api/v1/bots/").json()[0]["slug"] == "support-bot"
    assert get(client, "/api/v1/bots/?org=globex").status_code == 404


def test_a_viewer_session_cannot_explore_or_export_csv(client, bob, data):
    client.force_login(bob)
    for url in (
        "/api/v1/conversations/",
        "/api/v1/conversations/?q=refund",
        "/api/v1/conversations/?format=csv",
        "/api/v1/bots/?format=csv",
        "/api/v1/campaigns/?format=csv",
    ):
        response = get(client, url)
        assert response.status_code == 403, url
        assert response.json() == {"detail": "Your role (viewer) does not allow this."}, url
    # a transcript is a viewer's to read
    assert get(client, f"/api/v1/conversations/{data['convs'][0].pk}/").status_code == 200


def test_an_analyst_session_explores_and_exports_csv(client, dave, data):
    client.force_login(dave)
    assert get(client, "/api/v1/conversations/").status_code == 200
    response = get(client, "/api/v1/conversations/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert get(client, "/api/v1/bots/?format=csv").status_code == 200


# --- scoping: walk every read route -----------------------------------------------------------


def api_routes() -> list[str]:
    found = []

    def walk(patterns, prefix):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and route.startswith("api/v1/"):
                view = getattr(p.callback, "view_class", None)
                if view is not None and hasattr(view, "get"):
                    found.append((route, view))

    walk(get_resolver().url_patterns, "")
    return found


def fill(route: str, values: dict) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values.get(m.group(1), 1)), route)


def test_every_read_route_is_closed_to_other_orgs_and_to_anonymous_clients(
    client, outsider_key, ingest_key, data
):
    # Objects of `org`, read with the other org's key: 404 for object routes, none of them listed.
    values = {"slug": "support-bot", "conversation_id": data["convs"][0].pk}
    routes = api_routes()
    assert len([r for r, view in routes if view.__module__ == "analytics.api.read"]) == 11
    for route, view in routes:
        url = fill(route.replace("campaigns/<str:slug>", "campaigns/winter"), values)
        assert get(client, url).status_code in (401, 403), url
        if view.__module__ == "analytics.api.read":
            assert get(client, url, ingest_key).status_code == 403, url
        response = get(client, url, outsider_key)
        if "<" in route:
            assert response.status_code in (403, 404), url
        else:
            assert response.status_code in (200, 403), url
            text = response.content.decode()
            assert "support-bot" not in text and "Customer 0" not in text, url


def test_the_schema_documents_every_read_endpoint_and_the_docs_are_served_locally(client):
    schema = client.get("/api/schema/").content.decode()
    for operation in (
        "analytics_realtime",
        "analytics_response_times",
        "analytics_message_volume",
        "bots_list",
        "bots_performance",
        "bots_percentiles",
        "campaigns_list",
        "campaigns_metrics",
        "conversations_list",
        "conversations_retrieve",
        "system_health",
    ):
        assert f"operationId: {operation}" in schema, operation
    assert "name: q" in schema and "name: cursor" in schema and "'400':" in schema
    docs = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs
    assert "http://" not in docs.replace("http://testserver", "") and "https://" not in docs
