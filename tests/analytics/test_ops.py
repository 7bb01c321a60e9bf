"""Operating the product: /metrics, /healthz and the task-queue API."""

import uuid

import pytest

from analytics.models import Role
from analytics.services.api_keys import api_key_create
from config.celery import app as celery_app
from tests.factories import MembershipFactory, UserFactory


def post_events(client, key, events):
    return client.post(
        "/api/v1/events",
        {"events": events},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if (
            line.startswith(name + " ")
            or line.startswith(name + "{")
            and line.split(" ")[0] == name
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_count_ingested_events_and_requests(client, org, bot):
    key = api_key_create(organization=org, name="k", scopes="ingest").secret
    before = client.get("/metrics").content.decode()
    accepted = metric(before, 'botflow_events_total{result="accepted"}')
    rejected = metric(before, 'botflow_events_total{result="rejected"}')
    event = {
        "id": str(uuid.uuid4()),
        "type": "message",
        "bot": "support-bot",
        "conversation": "c1",
        "direction": "inbound",
        "text": "hi",
    }
    post_events(client, key, [event, {**event, "id": str(uuid.uuid4()), "bot": "nope"}, event])
    after = client.get("/metrics").content.decode()
    assert metric(after, 'botflow_events_total{result="accepted"}') == accepted + 1
    assert metric(after, 'botflow_events_total{result="rejected"}') == rejected + 1
    assert metric(after, 'botflow_events_total{result="duplicate"}') >= 1
    assert metric(after, "botflow_live_state_up") == 1
    assert 'botflow_queue_length{queue="rollups"}' in after
    assert "django_http_requests_total_by_method_total" in after  # django-prometheus
    assert "django_db_execute_total" in after


def test_metrics_are_not_public(client, settings, db):
    denied = client.get("/metrics", REMOTE_ADDR="203.0.113.7")
    assert denied.status_code == 403 and b"METRICS_TOKEN" in denied.content
    settings.METRICS_TOKEN = "scrape-me"
    assert (
        client.get(
            "/metrics", REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer wrong"
        ).status_code
        == 403
    )
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert ok.status_code == 200 and b"botflow_events_total" in ok.content


def test_healthz_names_the_broker_when_it_is_down(client, db):
    ok = client.get("/healthz").json()
    assert (ok["database"], ok["redis"], ok["broker"]) == ("ok", "ok", "ok")
    original = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        response = client.get("/healthz")
    finally:
        celery_app.conf.broker_url = original
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["broker"].startswith("error: ")
    assert body["database"] == "ok" and body["redis"] == "ok"


@pytest.fixture
def waiting_export():
    """One task message waiting in the broker's `default` queue (no worker runs in this test)."""
    celery_app.send_task("botflow.test.nothing", queue="default")
    yield
    with celery_app.connection_for_write() as conn:
        conn.default_channel.client.delete("default")


def test_the_queue_api_shows_waiting_and_finished_tasks_and_the_host_to_staff_only(
    client, org, alice, waiting_export
):
    celery_app.tasks["celery.backend_cleanup"].apply()  # runs here, through Celery's tracer
    client.force_login(UserFactory(username="ops", is_staff=True))  # no membership needed
    body = client.get("/api/v1/ops/queues").json()
    assert {"name": "default", "waiting": 1} in body["queues"]
    assert body["totals"]["waiting"] >= 1 and body["totals"]["succeeded"] >= 1
    latest = body["recent"][0]
    assert latest["name"] == "celery.backend_cleanup" and latest["state"] == "succeeded"
    assert latest["seconds"] >= 0 and latest["finished_at"].endswith("+00:00")
    assert 0 <= body["host"]["cpu_percent"] <= 100 and 0 < body["host"]["memory_percent"] <= 100


def test_org_owners_and_admins_do_not_see_every_orgs_tasks(client, org, alice, bob):
    """The queues hold every org's task activity: to a tenant, however senior, the route is absent."""
    admin = UserFactory(username="dora")
    MembershipFactory(organization=org, user=admin, role=Role.ADMIN)
    for user in (alice, admin, bob):  # owner, admin, viewer
        client.force_login(user)
        response = client.get("/api/v1/ops/queues")
        assert response.status_code == 404, user
        assert "queues" not in response.json() and "host" not in response.json()
    client.logout()
    assert client.get("/api/v1/ops/queues").status_code == 403  # no credentials, like every route
