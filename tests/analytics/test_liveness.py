"""/healthz and /metrics say how long ago pulse ticked, a Celery worker beat and each rollup kind
last succeeded: real pulse and worker processes, real Redis."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.conf import settings

from analytics.services.ingest import events_ingest
from analytics.services.ops import ops_pulse_tick, ops_worker_heartbeat
from analytics.tasks import rollup_hourly_dispatch
from tests.analytics.test_ops import metric
from tests.celery_worker import celery_worker, wait_for
from tests.e2e.live_servers import ROOT, database_url_of_tests, free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_signs_of_life_yet(redis_client):
    """Each test starts as if no pulse, worker or rollup had ever run (under this run's prefix)."""
    for what in ("pulse", "workers", "rollups"):
        redis_client.delete(f"{settings.LIVE_KEY_PREFIX}:ops:{what}")


def healthz(client):
    response = client.get("/healthz")
    return response.status_code, response.json()


def test_a_stale_pulse_makes_healthz_degraded_but_still_200(client):
    ops_pulse_tick(started=time.time() - 45, seconds=0.01, orgs=0, interval=0.15)
    ops_worker_heartbeat(worker="w1@host", at=time.time())
    code, body = healthz(client)
    assert code == 200  # the site still serves: a load balancer must keep this process
    assert body["status"] == "degraded"
    assert body["pulse"]["status"] == "stale" and 44 <= body["pulse"]["last_tick_age_seconds"] < 60
    assert body["worker"]["status"] == "ok" and body["worker"]["alive"] == 1
    assert body["database"] == body["redis"] == body["broker"] == "ok"

    ops_pulse_tick(started=time.time(), seconds=0.01, orgs=0, interval=0.15)
    code, body = healthz(client)
    assert (code, body["status"], body["pulse"]["status"]) == (200, "ok", "ok")
    assert body["pulse"]["last_tick_age_seconds"] < 5


def test_the_freshest_worker_counts_and_a_silent_one_is_stale(client):
    ops_pulse_tick(started=time.time(), seconds=0.01, orgs=0, interval=0.15)
    ops_worker_heartbeat(worker="gone@host", at=time.time() - 600)
    code, body = healthz(client)
    assert code == 200 and body["status"] == "degraded"
    assert body["worker"]["status"] == "stale" and body["worker"]["alive"] == 0
    assert body["worker"]["last_heartbeat_age_seconds"] >= 599
    ops_worker_heartbeat(worker="new@host", at=time.time())
    body = healthz(client)[1]
    assert body["worker"]["status"] == "ok" and body["worker"]["alive"] == 1
    text = client.get("/metrics").content.decode()
    assert metric(text, "botflow_worker_last_heartbeat_age_seconds") < 5
    assert metric(text, "botflow_workers_alive") == 1


def _pulse() -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_tests(),
        "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "pulse"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_pulse_tick_age_is_reported_while_it_runs_and_grows_once_it_is_killed(client):
    pulse = _pulse()
    try:
        wait_for(lambda: (healthz(client)[1]["pulse"]["last_tick_age_seconds"] or 99) < 2, 60)
        assert (
            metric(client.get("/metrics").content.decode(), "botflow_pulse_last_tick_age_seconds")
            < 2
        )
    finally:
        pulse.kill()
        pulse.wait()
    time.sleep(3)
    assert healthz(client)[1]["pulse"]["last_tick_age_seconds"] >= 3
    assert (
        metric(client.get("/metrics").content.decode(), "botflow_pulse_last_tick_age_seconds") >= 3
    )


def test_a_real_worker_beats_and_the_rollups_it_runs_are_stamped(client, org, bot):
    now = datetime.now(UTC)
    events_ingest(
        org=org,
        events=[
            {
                "id": str(uuid.uuid4()),
                "type": "message",
                "bot": "support-bot",
                "conversation": "c",
                "direction": "inbound",
                "text": "hi",
                "timestamp": (now - timedelta(hours=2)).isoformat(),
            }
        ],
    )
    with celery_worker() as worker:
        body = wait_for(lambda: (b := healthz(client)[1])["worker"]["status"] == "ok" and b, 30)
        assert body["worker"]["alive"] >= 1 and body["worker"]["last_heartbeat_age_seconds"] < 5
        rollup_hourly_dispatch.delay()  # one hour is due: its build stamps "hourly"
        wait_for(
            lambda: (
                'botflow_rollup_last_success_timestamp_seconds{kind="hourly"}'
                in client.get("/metrics").content.decode()
            ),
            60,
        )
        text = client.get("/metrics").content.decode()
        stamped = metric(text, 'botflow_rollup_last_success_timestamp_seconds{kind="hourly"}')
        assert time.time() - 60 < stamped <= time.time()
        assert metric(text, 'botflow_rollup_last_success_age_seconds{kind="hourly"}') < 60
        assert 'kind="daily"' not in text  # never succeeded: no sample (alert on absent())
        worker.kill()  # kill -9: no more heartbeats
    time.sleep(3)
    assert healthz(client)[1]["worker"]["last_heartbeat_age_seconds"] >= 3


def test_healthz_answers_503_within_seconds_when_redis_hangs(client, settings):
    """A Redis that accepts connections but never answers (SIGSTOP): /healthz names it within a
    couple of seconds, never a 500."""
    server = shutil.which("redis-server")
    port = free_port()
    redis = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        wait_for(
            lambda: (
                subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout
                == b"PONG\n"
            ),
            10,
        )
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        os.kill(redis.pid, signal.SIGSTOP)
        started = time.monotonic()
        code, body = healthz(client)
        took = time.monotonic() - started
        assert code == 503 and body["status"] == "degraded"
        assert body["redis"] == "error: TimeoutError" and body["database"] == "ok"
        assert body["pulse"] == {"status": "unknown", "last_tick_age_seconds": None}
        assert body["worker"]["status"] == "unknown"
        assert took < 4, took
    finally:
        os.kill(redis.pid, signal.SIGCONT)
        redis.kill()
        redis.wait()


def test_healthz_names_the_database_when_postgresql_is_unreachable():
    """A web process whose PostgreSQL does not answer: 503 JSON naming it, not a 500 page."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/none",
        "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    daphne = os.path.join(os.path.dirname(sys.executable), "daphne")
    web = subprocess.Popen(
        [daphne, "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answer():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
        except urllib.error.HTTPError as exc:
            return exc
        except OSError:
            return None  # not listening yet
        raise AssertionError("200 without a database")

    try:
        started = time.monotonic()
        error = wait_for(answer, 30)
        assert error.code == 503
        body = orjson.loads(error.read())
        assert body["database"].startswith("error: ") and body["redis"] == "ok"
        assert time.monotonic() - started < 30
    finally:
        web.kill()
        web.wait()
