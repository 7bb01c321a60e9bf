"""RabbitMQ as Celery's broker, chosen by environment (CELERY_BROKER_URL): real workers on the
machine's RabbitMQ build a rollup and a CSV export; a task sent while no worker runs waits in its
durable queue; a private RabbitMQ restarted under a busy worker keeps every queued task and the
worker reconnects without exiting."""

import csv
from datetime import UTC, datetime, timedelta

import kombu
import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from analytics.beat import DatabaseScheduler
from analytics.models import BotHourlyRollup, OrgHourlyUsage, RollupDirtyHour
from analytics.services.export import export_job_get
from config.celery import app as celery_app
from tests.celery_worker import celery_worker, wait_for
from tests.factories import BotFactory, ConversationFactory, MessageFactory, OrganizationFactory
from tests.scale.rabbitmq import SHARED_URL, Broker, PrivateRabbitMQ, unreachable

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

# Sent from a process of its own configured by environment only, as a web process would send.
SEND_ROLLUPS = """
import json
from analytics.services.enqueue import ROLLUP_BUILD_HOURLY, task_send
for hour in {hours!r}:
    task_send(ROLLUP_BUILD_HOURLY, args=[{org_id}, hour])
print(json.dumps({{"sent": len({hours!r})}}))
"""
START_EXPORT = """
import json
from analytics.models import Organization
from analytics.services.export import export_job_start
job = export_job_start(
    org=Organization.objects.get(pk={org_id}), kind="conversations", query="period=24h",
    filename="conversations.csv",
)
print(json.dumps({{"job": job.id}}))
"""
OPS = """
import json
from analytics.services.ops import broker_ping, queue_lengths
from django.conf import settings
print(json.dumps({"ping": broker_ping(), "queues": queue_lengths(),
                  "broker": settings.CELERY_BROKER_URL, "backend": settings.CELERY_RESULT_BACKEND}))
"""
PING = """
import json
from analytics.services.ops import broker_ping
print(json.dumps({"ping": broker_ping()}))
"""


@pytest.fixture(scope="module")
def shared_rabbitmq():
    why = unreachable(SHARED_URL)
    if why:
        # Not a skip: every machine of this kind (CI included) runs RabbitMQ on 127.0.0.1:5672.
        pytest.fail(f"the broker tests need the machine's RabbitMQ: {why}")
    return SHARED_URL


@pytest.fixture
def broker(shared_rabbitmq, tmp_path):
    """This test's queues on the shared RabbitMQ (a prefix of its own), deleted afterwards."""
    broker = Broker.new(shared_rabbitmq, tmp_path / "exports")
    yield broker
    broker.delete_queues()


@pytest.fixture
def private_rabbitmq():
    why = PrivateRabbitMQ.available()
    if why:
        pytest.fail(f"the broker restart test needs a private RabbitMQ: {why}")
    server = PrivateRabbitMQ()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def seeded_hours(slug: str, hours: int) -> tuple:
    """An org with one bot and, in each of the last `hours` full hours, 2 conversations of 3
    outbound messages each; every hour is marked for a rollup."""
    org = OrganizationFactory(slug=slug)
    bot = BotFactory(organization=org, slug="support-bot")
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    marked = [top - timedelta(hours=n) for n in range(2, 2 + hours)]
    for hour in marked:
        for c in range(2):
            conv = ConversationFactory(
                bot=bot, started_at=hour + timedelta(minutes=c), customer=f"Ana {hour:%H}-{c}"
            )
            for m in range(3):
                MessageFactory(
                    conversation=conv,
                    created_at=hour + timedelta(minutes=c, seconds=m),
                    response_time_ms=100 * (m + 1),
                    tokens=10,
                )
        RollupDirtyHour.objects.create(organization=org, hour=hour)
    return org, marked


def rolled_up(org, hour) -> tuple[int, int] | None:
    row = BotHourlyRollup.objects.for_org(org).filter(hour=hour).first()
    return None if row is None else (row.messages_out, row.tokens)


def test_a_worker_on_rabbitmq_builds_a_rollup_and_an_export(broker):
    org, (hour,) = seeded_hours("rabbit", 1)
    before = broker.shell(OPS)
    assert before["broker"] == broker.url and before["backend"].startswith("redis")
    assert before["ping"] == "ok"
    # no queue of this run exists yet: each reads as empty (not an error, not a 500 on /metrics)
    assert before["queues"] == {broker.queue(n): 0 for n in settings.CELERY_QUEUE_NAMES}
    with celery_worker(env=broker.env()):
        broker.shell(SEND_ROLLUPS.format(org_id=org.pk, hours=[hour.isoformat()]))
        job = broker.shell(START_EXPORT.format(org_id=org.pk))["job"]
        wait_for(lambda: rolled_up(org, hour), timeout=60, message="no rollup through RabbitMQ")
        wait_for(
            lambda: export_job_get(org=org, job_id=job).status == "ready",
            timeout=90,
            message="the export did not finish through RabbitMQ",
        )
    assert rolled_up(org, hour) == (6, 60)
    assert OrgHourlyUsage.objects.for_org(org).get(hour=hour).active_users == 2
    assert not RollupDirtyHour.objects.for_org(org).exists()
    # the worker wrote it where the environment said (EXPORT_DIR), as web reads it
    path = broker.export_dir / str(org.pk) / f"{job}.csv"
    with open(path, newline="") as f:
        exported = list(csv.DictReader(f))
    assert sorted(r["customer"] for r in exported) == [f"Ana {hour:%H}-0", f"Ana {hour:%H}-1"]
    assert {r["bot"] for r in exported} == {"support-bot"}

    # the queues are durable on the broker: declaring one as transient is refused
    with kombu.Connection(broker.url) as conn, pytest.raises(conn.channel_errors, match="durable"):
        conn.channel().queue_declare(queue=broker.queue("rollups"), durable=False)
    assert broker.depth("rollups") == (0, 0)  # nothing left waiting, no worker consuming


def test_the_broker_check_of_healthz_names_a_rabbitmq_that_does_not_answer(tmp_path):
    down = Broker.new("amqp://guest:guest@127.0.0.1:1//", tmp_path)
    assert down.shell(PING)["ping"] == "error: OperationalError"


def test_a_task_sent_while_no_worker_runs_waits_in_rabbitmq_and_is_done_later(broker):
    org, (hour,) = seeded_hours("waits", 1)
    with celery_worker(env=broker.env()):
        pass  # a worker came and went (its queues stay declared: durable, not auto-deleted)
    broker.shell(SEND_ROLLUPS.format(org_id=org.pk, hours=[hour.isoformat()]))
    # what the ops API and /metrics report, read from RabbitMQ
    ops = broker.shell(OPS)
    assert ops["queues"][broker.queue("rollups")] == 1
    assert ops["queues"][broker.queue("default")] == 0
    # the message waits as a persistent one (written to disk, kept over a broker restart)
    with kombu.Connection(broker.url) as conn:
        channel = conn.channel()
        message = channel.basic_get(broker.queue("rollups"), no_ack=False)
        assert message.properties["delivery_mode"] == 2
        channel.basic_reject(message.delivery_tag, requeue=True)
    assert rolled_up(org, hour) is None

    with celery_worker(env=broker.env()):
        wait_for(lambda: rolled_up(org, hour), timeout=60, message="the queued task was lost")
    assert rolled_up(org, hour) == (6, 60)
    assert broker.depth("rollups") == (0, 0)


@pytest.mark.parametrize("crash", [False, True], ids=["restart", "crash"])
def test_a_rabbitmq_restart_keeps_the_queued_tasks_and_the_worker_reconnects(
    private_rabbitmq, tmp_path, crash
):
    """A clean restart (SIGTERM) or a crash (SIGKILL) of the broker while the worker is busy."""
    org, hours = seeded_hours("restart", 3)
    broker = Broker.new(private_rabbitmq.url, tmp_path / "exports")
    db = connection.settings_dict
    params = {
        "dbname": db["NAME"],
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
        "host": db["HOST"] or None,
        "port": db["PORT"] or None,
    }
    with celery_worker(env=broker.env()) as worker:
        pid = worker.proc.pid
        with psycopg.connect(**params) as blocker:
            # the worker's first rollup waits on this lock: the other two wait in the queue
            blocker.execute("LOCK TABLE analytics_orghourlyusage IN EXCLUSIVE MODE")
            broker.shell(SEND_ROLLUPS.format(org_id=org.pk, hours=[h.isoformat() for h in hours]))
            wait_for(lambda: broker.depth("rollups") == (2, 1), message="not 1 taken, 2 waiting")

            restart_seconds = private_rabbitmq.restart(crash=crash)
            # back with all three (persistent messages of durable queues, on disk before the send
            # returned: publisher confirms): two waited, the unacknowledged one (acks_late) too
            assert broker.depth("rollups")[0] >= 2
            assert worker.proc.poll() is None  # the worker kept retrying, it did not exit
            worker.wait_until_it_answers(60)
            wait_for(lambda: broker.depth("rollups") == (2, 1), message="no reconnected consumer")
            blocker.rollback()  # let the rollups run
        wait_for(
            lambda: all(rolled_up(org, h) for h in hours),
            timeout=120,
            message="tasks queued over the broker restart were lost",
        )
        wait_for(lambda: not RollupDirtyHour.objects.for_org(org).exists())
        assert worker.proc.poll() is None and worker.proc.pid == pid
    assert [rolled_up(org, h) for h in hours] == [(6, 60)] * 3
    assert [OrgHourlyUsage.objects.for_org(org).get(hour=h).active_users for h in hours] == [2] * 3
    assert broker.depth("rollups") == (0, 0)
    assert restart_seconds < 60


def test_beat_sends_its_rows_to_the_prefixed_queues(settings):
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    row = PeriodicTask.objects.create(
        name="sweep",
        task="analytics.tasks.conversation_metrics_sweep",
        interval=every,
        queue="rollups",
    )
    settings.CELERY_QUEUE_PREFIX = "ci-7."
    assert DatabaseScheduler.Entry(row, app=celery_app).options["queue"] == "ci-7.rollups"
    settings.CELERY_QUEUE_PREFIX = ""
    assert DatabaseScheduler.Entry(row, app=celery_app).options["queue"] == "rollups"
