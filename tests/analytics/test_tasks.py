"""Tasks through a real Celery worker: the hourly run, conversation metrics on end, a killed worker."""

import importlib
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.apps import apps as django_apps
from django.db import connection
from django_celery_beat.models import PeriodicTask

from analytics.models import (
    BotHourlyRollup,
    ConversationMetrics,
    OrgHourlyUsage,
    RollupDirtyDay,
    RollupDirtyHour,
)
from analytics.services import enqueue
from analytics.services.ingest import events_ingest
from analytics.services.rollup import rollup_build_hourly
from analytics.tasks import (
    rollup_build_daily_task,
    rollup_build_hourly_task,
    rollup_daily_dispatch,
    rollup_hourly_dispatch,
)
from config.celery import app as celery_app
from tests.celery_worker import celery_worker, wait_for
from tests.factories import BotFactory, ConversationFactory, MessageFactory, OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def event(kind, at, **fields):
    return {
        "id": str(uuid.uuid4()),
        "type": kind,
        "bot": "support-bot",
        "timestamp": at.isoformat(),
        **fields,
    }


def rows(model, org):
    return sorted(
        (
            {k: v for k, v in r.items() if k not in ("id", "updated_at")}
            for r in model.objects.for_org(org).values()
        ),
        key=lambda r: (str(r.get("hour")), r.get("bot_id") or 0),
    )


def test_the_schedules_exist_from_the_migration():
    # transactional tests flush the migration's rows: create them again the migration's way
    migration = importlib.import_module("analytics.migrations.0004_rollup_schedules")
    migration.create(django_apps, None)
    migration.create(django_apps, None)  # idempotent
    tasks = {t.task: t for t in PeriodicTask.objects.all()}
    hourly = tasks["analytics.tasks.rollup_hourly_dispatch"]
    assert (hourly.crontab.minute, hourly.crontab.hour) == ("5", "*")
    daily = tasks["analytics.tasks.rollup_daily_dispatch"]
    assert (daily.crontab.minute, daily.crontab.hour) == ("0", "*")
    sweep = tasks["analytics.tasks.conversation_metrics_sweep"]
    assert (sweep.interval.every, sweep.interval.period) == (10, "minutes")
    assert all(
        t.enabled and t.queue == "rollups" and t.expire_seconds for t in (hourly, daily, sweep)
    )


def test_tasks_retry_with_backoff_ack_late_expire_and_are_rate_limited():
    for task in (rollup_build_hourly_task, rollup_build_daily_task, rollup_hourly_dispatch):
        assert task.acks_late and task.reject_on_worker_lost
        assert task.max_retries == 3 and task.retry_backoff and task.autoretry_for
        assert task.expires and task.rate_limit


# Every task's registered name: beat's rows and queued messages refer to tasks by these.
REGISTERED_NAMES = {
    "analytics.tasks.rollup_build_hourly_task",
    "analytics.tasks.rollup_build_daily_task",
    "analytics.tasks.rollup_hourly_dispatch",
    "analytics.tasks.rollup_daily_dispatch",
    "analytics.tasks.conversation_metrics_on_end",
    "analytics.tasks.conversation_metrics_build_task",
    "analytics.tasks.conversation_metrics_sweep",
    "analytics.alert_tasks.insights_refresh_task",
    "analytics.alert_tasks.insights_refresh_dispatch",
    "analytics.alert_tasks.alert_rules_evaluate_task",
    "analytics.alert_tasks.alert_notification_deliver_task",
    "analytics.alert_tasks.alert_notifications_sweep_task",
    "analytics.export_build",
    "analytics.tasks.retention_enforce_task",
}


def test_every_task_keeps_its_name_and_what_services_send_by_name_is_registered():
    ours = {name for name in celery_app.tasks if name.startswith("analytics.")}
    assert ours == REGISTERED_NAMES
    sent = {v for k, v in vars(enqueue).items() if k.isupper() and isinstance(v, str)}
    assert sent and sent <= REGISTERED_NAMES
    # the routes still match: each task lands on the queue it did before
    route = celery_app.amqp.router.route
    assert route({}, "analytics.tasks.conversation_metrics_on_end")["queue"].name == "followups"
    assert route({}, "analytics.tasks.rollup_build_hourly_task")["queue"].name == "rollups"
    assert route({}, "analytics.tasks.conversation_metrics_sweep")["queue"].name == "rollups"
    assert route({}, "analytics.alert_tasks.insights_refresh_task")["queue"].name == "insights"
    assert route({}, "analytics.alert_tasks.alert_rules_evaluate_task")["queue"].name == "alerts"
    assert route({}, "analytics.export_build")["queue"].name == "default"
    assert route({}, "analytics.tasks.retention_enforce_task")["queue"].name == "rollups"


def test_the_hourly_run_and_conversation_metrics_through_a_real_worker():
    org = OrganizationFactory(slug="acme")
    BotFactory(organization=org, slug="support-bot")
    now = datetime.now(UTC)
    past = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    with celery_worker():
        events_ingest(
            org=org,
            events=[
                event(
                    "message",
                    past + timedelta(minutes=1),
                    conversation="x",
                    direction="inbound",
                    customer="Ana",
                ),
                event(
                    "message",
                    past + timedelta(minutes=2),
                    conversation="x",
                    direction="outbound",
                    response_time_ms=640,
                    outcome="success",
                    tokens=12,
                ),
                event(
                    "conversation.ended",
                    past + timedelta(minutes=3),
                    conversation="x",
                    status="resolved",
                    csat=5,
                ),
            ],
        )
        # ingestion queued the ended conversation's metrics on the followups queue
        metrics = wait_for(lambda: ConversationMetrics.objects.for_org(org).first())
        assert (metrics.total_messages, metrics.p50_response_time_ms, metrics.csat) == (2, 640, 5)
        assert rollup_hourly_dispatch.delay().get(timeout=30) == 1
        wait_for(lambda: not RollupDirtyHour.objects.for_org(org).filter(hour=past).exists())
    row = BotHourlyRollup.objects.for_org(org).get(hour=past)
    assert (row.messages_in, row.messages_out, row.tokens, row.csat_sum) == (1, 1, 12, 5)
    assert OrgHourlyUsage.objects.for_org(org).get(hour=past).active_users == 1
    assert RollupDirtyDay.objects.for_org(org).exists()  # its day is built at 01:00 org time


def test_a_worker_killed_mid_rollup_leaves_nothing_partial_and_the_retry_matches():
    org = OrganizationFactory(slug="kill")
    hour = datetime(2026, 11, 20, 10, tzinfo=UTC)
    for slug in ("a", "b", "c"):
        bot = BotFactory(organization=org, slug=slug)
        for i in range(30):
            conv = ConversationFactory(
                bot=bot, started_at=hour + timedelta(minutes=i), customer=f"cust{i % 9}"
            )
            for j in range(4):
                MessageFactory(
                    conversation=conv,
                    response_time_ms=50 * (i + j + 1),
                    created_at=hour + timedelta(minutes=i, seconds=j),
                )
    rollup_build_hourly(org_id=org.pk, hour=hour)  # the undisturbed result
    expected = (rows(BotHourlyRollup, org), rows(OrgHourlyUsage, org))
    assert len(expected[0]) == 3
    BotHourlyRollup.objects.for_org(org).delete()
    OrgHourlyUsage.objects.for_org(org).delete()
    RollupDirtyHour.objects.create(organization=org, hour=hour)

    db = connection.settings_dict
    params = {
        "dbname": db["NAME"],
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
        "host": db["HOST"] or None,
        "port": db["PORT"] or None,
    }

    def waiting_on_locks() -> list[int]:
        with psycopg.connect(**params, autocommit=True) as watcher:
            return [
                row[0]
                for row in watcher.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND wait_event = 'relation'"
                )
            ]

    def alive(pids: list[int]) -> bool:
        with psycopg.connect(**params, autocommit=True) as watcher:
            return bool(
                watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
                ).fetchone()[0]
            )

    with psycopg.connect(**params) as blocker:
        # hold the usage table so the worker stops half-way: bot rows written, usage row not yet
        blocker.execute("LOCK TABLE analytics_orghourlyusage IN EXCLUSIVE MODE")
        with celery_worker(visibility_timeout=10) as worker:
            rollup_build_hourly_task.delay(org.pk, hour.isoformat())
            backends = wait_for(waiting_on_locks)
            # mid-rollup: the bot rows are written but not committed, so nobody sees them
            assert not BotHourlyRollup.objects.for_org(org).exists()
            worker.kill()
        blocker.rollback()
    # the orphaned backend finishes its statement, finds its client gone and rolls back
    wait_for(lambda: not alive(backends))
    # nothing of the killed run is visible; the hour is still marked for the next run
    assert not BotHourlyRollup.objects.for_org(org).exists()
    assert not OrgHourlyUsage.objects.for_org(org).exists()
    assert RollupDirtyHour.objects.for_org(org).filter(hour=hour).exists()

    # a new worker gets the unacknowledged task again (acks_late) and finishes it
    with celery_worker(visibility_timeout=10):
        wait_for(lambda: not RollupDirtyHour.objects.for_org(org).exists(), timeout=90)
    assert (rows(BotHourlyRollup, org), rows(OrgHourlyUsage, org)) == expected


def test_the_daily_dispatch_builds_due_days_through_a_worker():
    org = OrganizationFactory(slug="daily", timezone="Europe/Berlin")
    bot = BotFactory(organization=org)
    day = (datetime.now(UTC) - timedelta(days=3)).date()
    start = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    conv = ConversationFactory(bot=bot, started_at=start)
    MessageFactory(conversation=conv, created_at=start, response_time_ms=420)
    RollupDirtyDay.objects.create(organization=org, date=day)
    with celery_worker():
        assert rollup_daily_dispatch.delay().get(timeout=30) == 1
        wait_for(lambda: not RollupDirtyDay.objects.for_org(org).exists())
    from analytics.models import BotDailyMetrics

    daily = BotDailyMetrics.objects.for_org(org).get(date=day)
    assert (daily.messages_out, daily.p95_response_time_ms) == (1, 420)
