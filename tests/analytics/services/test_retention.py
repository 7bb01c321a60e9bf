"""Data with a life cycle (issue 14): monthly partitions of the raw event tables, per-org
retention enforced by dropping whole months or small batches, never while a reader needs them."""

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from analytics import partitioning
from analytics.filters import conversation_filter, serial_plans
from analytics.models import (
    Activity,
    BotDailyMetrics,
    BotHourlyRollup,
    Conversation,
    ConversationMetrics,
    EventReceipt,
    Message,
    Organization,
    RollupBackfill,
)
from analytics.services.ingest import events_ingest
from analytics.services.partitions import partition_drop, partitions_ensure, partitions_list
from analytics.services.retention import retention_enforce
from tests import factories as f
from tests.e2e.live_servers import database_url_of_tests

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _partition_of(model, pk) -> str:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [pk])  # noqa: S608
        row = cursor.fetchone()
    return row[0] if row else ""


def _tables() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relkind IN ('r', 'p')")
        return {name for (name,) in cursor.fetchall()}


def _message(bot, at, **kw):
    conversation = f.ConversationFactory(
        bot=bot, started_at=at, last_activity_at=at, external_id=f"c-{at:%Y%m%d%H%M%S}-{bot.pk}"
    )
    return f.MessageFactory(conversation=conversation, created_at=at, **kw)


def test_messages_and_activities_are_stored_in_their_months_partition(bot):
    message = _message(bot, datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
    activity = f.ActivityFactory(
        bot=f.BotFactory(organization=bot.organization, kind="ai_employee"),
        created_at=datetime(2026, 10, 2, tzinfo=UTC),
    )
    assert _partition_of(Message, message.pk) == "analytics_message_p2026_11"
    assert _partition_of(Activity, activity.pk) == "analytics_activity_p2026_10"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
        )
        assert {"analytics_message", "analytics_activity"} <= {n for (n,) in cursor.fetchall()}
    # ids keep counting from one sequence, as before the tables were partitioned
    later = _message(bot, datetime(2026, 12, 1, tzinfo=UTC))
    assert later.pk > message.pk


def test_a_query_for_a_time_range_reads_only_that_months_partitions(org):
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT * FROM analytics_message WHERE organization_id = %s "
            "AND created_at >= '2026-11-03' AND created_at < '2026-11-10'",
            [org.pk],
        )
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "analytics_message_p2026_11" in plan
    assert "analytics_message_p2026_10" not in plan and "pdefault" not in plan


def test_the_months_ahead_are_created_once(db):
    later = datetime(2027, 6, 15, tzinfo=UTC)
    created = partitions_ensure(now=later)
    assert "analytics_message_p2027_09" in created and "analytics_activity_p2027_06" in created
    assert "analytics_eventreceipt_p2027_09" in created
    assert "analytics_message_p2027_03" not in created  # made by the migration already
    assert partitions_ensure(now=later) == []
    assert "analytics_message_p2027_09" in _tables()


def test_rows_the_default_partition_caught_move_into_their_new_month(bot):
    # December 2027 has no partition yet: the row waits in the DEFAULT partition, not an error
    message = _message(bot, datetime(2027, 12, 10, tzinfo=UTC))
    assert _partition_of(Message, message.pk) == "analytics_message_pdefault"
    assert "analytics_message_p2027_12" in partitions_ensure(now=datetime(2027, 11, 1, tzinfo=UTC))
    assert _partition_of(Message, message.pk) == "analytics_message_p2027_12"
    assert Message.objects.get(pk=message.pk).text == message.text


def test_a_receipt_the_default_partition_caught_moves_into_its_new_month(org):
    receipt = f.EventReceiptFactory(organization=org, occurred_month=date(2027, 12, 1))
    assert _partition_of(EventReceipt, receipt.pk) == "analytics_eventreceipt_pdefault"
    partitions_ensure(now=datetime(2027, 11, 1, tzinfo=UTC))
    assert _partition_of(EventReceipt, receipt.pk) == "analytics_eventreceipt_p2027_12"


def test_a_month_past_every_orgs_retention_is_dropped_whole(bot):
    org = bot.organization
    Organization.objects.filter(pk=org.pk).update(raw_retention_days=30)
    old = _message(bot, datetime(2026, 8, 14, tzinfo=UTC))  # August: ended > 30 days ago
    recent = _message(bot, datetime(2026, 11, 20, tzinfo=UTC))
    result = retention_enforce(now=NOW)
    assert "analytics_message_p2026_08" in result.dropped
    assert "analytics_message_p2026_08" not in _tables()
    assert "analytics_message_p2026_10" in result.dropped  # ended 34 days before NOW
    assert "analytics_message_p2026_11" not in result.dropped
    assert not Message.objects.filter(pk=old.pk).exists()
    assert Message.objects.filter(pk=recent.pk).exists()
    assert not Conversation.objects.filter(pk=old.conversation_id).exists()
    assert Conversation.objects.filter(pk=recent.conversation_id).exists()
    # idempotent: a second run finds nothing more to do
    again = retention_enforce(now=NOW)
    assert again.dropped == [] and again.deleted == {}


def _receipt_partitions(org) -> dict[str, str]:
    """event id -> the partition its receipt is stored in."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.event_id::text, c.relname FROM analytics_eventreceipt r "
            "JOIN pg_class c ON c.oid = r.tableoid "
            "JOIN pg_inherits i ON i.inhrelid = c.oid "
            "AND i.inhparent = 'analytics_eventreceipt'::regclass WHERE r.organization_id = %s",
            [org.pk],
        )
        return dict(cursor.fetchall())


def _event(event_id: str, bot, at: datetime) -> dict:
    return {
        "id": event_id,
        "type": "message",
        "bot": bot.slug,
        "conversation": f"c-{event_id[-4:]}",
        "direction": "inbound",
        "text": "hello",
        "timestamp": at.isoformat(),
    }


NOVEMBER = "0c1e2a8e-0000-4000-8000-00000000a011"
DECEMBER = "0c1e2a8e-0000-4000-8000-00000000a012"


def test_a_receipt_is_stored_in_the_partition_of_its_events_month(bot):
    result = events_ingest(
        org=bot.organization,
        events=[
            _event(NOVEMBER, bot, datetime(2026, 11, 30, 23, 59, tzinfo=UTC)),
            _event(DECEMBER, bot, datetime(2026, 12, 1, 0, 1, tzinfo=UTC)),
        ],
        now=NOW,
    )
    assert result.accepted == 2
    assert _receipt_partitions(bot.organization) == {
        NOVEMBER: "analytics_eventreceipt_p2026_11",
        DECEMBER: "analytics_eventreceipt_p2026_12",
    }
    # the message and its receipt share the month, and so leave together
    november = Message.objects.for_org(bot.organization).get(created_at__month=11)
    assert _partition_of(Message, november.pk) == "analytics_message_p2026_11"


def test_dropping_a_month_drops_its_receipts_and_its_events_are_refused_from_then_on(bot):
    org = bot.organization
    at = datetime(2026, 8, 14, tzinfo=UTC)
    august = "0c1e2a8e-0000-4000-8000-00000000a008"
    assert events_ingest(org=org, events=[_event(august, bot, at)], now=at).accepted == 1
    assert _receipt_partitions(org) == {august: "analytics_eventreceipt_p2026_08"}
    Organization.objects.filter(pk=org.pk).update(raw_retention_days=30)
    org.refresh_from_db()

    result = retention_enforce(now=NOW)

    assert "analytics_eventreceipt_p2026_08" in result.dropped
    assert "analytics_eventreceipt_p2026_08" not in _tables()
    assert "analytics_eventreceipt" not in result.deleted  # the month went whole
    assert not EventReceipt.objects.for_org(org).exists()
    # its receipt is gone, but no retry of it can be stored twice: it is past the retention
    retry = events_ingest(org=org, events=[_event(august, bot, at)], now=NOW)
    assert retry.accepted == 0
    assert "retention of this organization" in retry.rejected[0]["errors"]["timestamp"]


def test_an_org_that_keeps_less_loses_only_its_own_expired_rows(org, other_org):
    short_bot = f.BotFactory(organization=org, slug="short")
    long_bot = f.BotFactory(organization=other_org, slug="long")
    Organization.objects.filter(pk=org.pk).update(raw_retention_days=30, rollup_retention_days=365)
    at = NOW - timedelta(days=60)
    expired = _message(short_bot, at)
    f.ConversationMetricsFactory(conversation=expired.conversation)
    kept = _message(long_bot, at)
    fresh = _message(short_bot, NOW - timedelta(days=5))
    employee = f.BotFactory(organization=org, slug="luna", kind="ai_employee")
    f.ActivityFactory(bot=employee, created_at=at)
    old_hour = (NOW - timedelta(days=400)).replace(minute=0)
    f.BotHourlyRollupFactory(bot=short_bot, hour=old_hour)
    f.BotHourlyRollupFactory(bot=short_bot, hour=NOW - timedelta(days=60))
    f.BotDailyMetricsFactory(bot=short_bot, date=old_hour.date())
    # receipts go by their event's month: October is wholly before NOW - 30 days (Nov 4)
    f.EventReceiptFactory(organization=org, occurred_month=date(2026, 10, 1))
    kept_receipts = [
        f.EventReceiptFactory(organization=org, occurred_month=date(2026, 11, 1)).pk,
        f.EventReceiptFactory(organization=other_org, occurred_month=date(2026, 10, 1)).pk,
    ]

    result = retention_enforce(now=NOW)

    # other_org still keeps 395 days: only months older than that are dropped
    assert "analytics_message_p2026_10" not in result.dropped
    assert all(
        partitioning.bounds(partitioning.partition_month("analytics_message", name))[1]
        <= NOW - timedelta(days=395)
        for name in result.dropped
        if name.startswith("analytics_message_p")
    )
    assert not Message.objects.filter(pk=expired.pk).exists()
    assert not Conversation.objects.filter(pk=expired.conversation_id).exists()
    assert not ConversationMetrics.objects.filter(conversation_id=expired.conversation_id).exists()
    assert not Activity.objects.for_org(org).exists()
    assert Message.objects.filter(pk__in=[kept.pk, fresh.pk]).count() == 2
    assert result.deleted["analytics_message"] == 1
    assert result.deleted["analytics_conversation"] == 1
    assert result.deleted["analytics_eventreceipt"] == 1
    assert sorted(EventReceipt.objects.values_list("pk", flat=True)) == sorted(kept_receipts)
    # rollups are kept far longer: only the one past the org's 365 days went
    assert list(BotHourlyRollup.objects.for_org(org).values_list("hour", flat=True)) == [
        NOW - timedelta(days=60)
    ]
    assert not BotDailyMetrics.objects.for_org(org).exists()


def test_a_running_backfill_keeps_the_months_it_reads(bot):
    Organization.objects.filter(pk=bot.organization_id).update(raw_retention_days=30)
    RollupBackfill.objects.create(
        organization=bot.organization,
        since=date(2026, 9, 1),
        until=date(2026, 9, 30),
        started_at=NOW - timedelta(hours=1),
    )
    result = retention_enforce(now=NOW)
    # every expired month from the backfill's first day on is kept; earlier ones go
    assert (
        result.deferred["analytics_message_p2026_09"] == "a rollup backfill is reading this month"
    )
    assert "analytics_message_p2026_10" in result.deferred
    assert {"analytics_message_p2026_09", "analytics_message_p2026_10"} <= _tables()
    assert "analytics_message_p2026_08" in result.dropped


def test_a_dead_backfill_does_not_keep_data_forever(bot):
    Organization.objects.filter(pk=bot.organization_id).update(raw_retention_days=30)
    RollupBackfill.objects.create(
        organization=bot.organization,
        since=date(2026, 9, 1),
        until=date(2026, 9, 30),
        started_at=NOW - timedelta(days=2),  # never finished: its process died
    )
    assert "analytics_message_p2026_09" in retention_enforce(now=NOW).dropped


def test_a_query_reading_the_month_makes_the_drop_wait_for_the_next_run(db):
    part = next(p for p in partitions_list("analytics_message") if p.month is not None)
    reader = psycopg.connect(database_url_of_tests())
    try:
        reader.execute(f"SELECT count(*) FROM {part.name}")  # noqa: S608 - an open transaction holds it
        assert partition_drop(part, lock_timeout_ms=200) is False
        assert part.name in _tables()
    finally:
        reader.close()


def test_an_event_older_than_the_orgs_retention_is_refused_and_the_rest_kept(bot):
    org = bot.organization
    org.raw_retention_days = 30
    org.save()
    events = [
        {
            "id": "0c1e2a8e-0000-4000-8000-000000000001",
            "type": "message",
            "bot": bot.slug,
            "conversation": "old",
            "direction": "inbound",
            "text": "hello from the past",
            "timestamp": (datetime.now(UTC) - timedelta(days=40)).isoformat(),
        },
        {
            "id": "0c1e2a8e-0000-4000-8000-000000000002",
            "type": "message",
            "bot": bot.slug,
            "conversation": "new",
            "direction": "inbound",
            "text": "hello now",
            "timestamp": (datetime.now(UTC) - timedelta(days=10)).isoformat(),
        },
    ]
    result = events_ingest(org=org, events=events)
    assert result.accepted == 1
    assert result.rejected[0]["index"] == 0
    assert "retention of this organization (30 days)" in result.rejected[0]["errors"]["timestamp"]
    assert list(Message.objects.for_org(org).values_list("text", flat=True)) == ["hello now"]
    assert EventReceipt.objects.for_org(org).count() == 1


@pytest.mark.parametrize("days", [29, 731])
def test_a_retention_outside_its_range_names_the_field(org, days):
    org.raw_retention_days = days
    with pytest.raises(ValidationError) as refused:
        org.full_clean()
    assert "raw_retention_days" in refused.value.message_dict


def test_an_owner_sets_the_retention_in_admin_and_an_admin_cannot(client, alice, erin, org):
    url = reverse("admin:analytics_organization_change", args=[org.pk])
    form = {
        "name": "Acme",
        "timezone": "UTC",
        "raw_retention_days": "90",
        "rollup_retention_days": "730",
    }
    client.force_login(erin)
    client.post(url, form)
    org.refresh_from_db()
    assert org.raw_retention_days == 395
    client.force_login(alice)
    response = client.post(url, {**form, "raw_retention_days": "10"})
    assert "Ensure this value is greater than or equal to 30." in response.content.decode()
    client.post(url, form)
    org.refresh_from_db()
    assert (org.raw_retention_days, org.rollup_retention_days) == (90, 730)


def test_the_explorer_says_what_range_the_orgs_retention_leaves(client, dave, org):
    Organization.objects.filter(pk=org.pk).update(raw_retention_days=30)
    client.force_login(dave)
    html = client.get("/o/acme/conversations/?start=2001-01-01").content.decode()
    assert "retention limit of 30 days" in html
    assert "data is available from" in html


def test_beat_runs_the_retention_daily_on_the_rollups_queue(db):
    task = PeriodicTask.objects.get(task="analytics.tasks.retention_enforce_task")
    assert task.enabled and task.queue == "rollups"
    assert (task.crontab.hour, task.crontab.minute) == ("3", "15")


def test_a_search_reads_only_the_months_of_its_range(bot):
    _message(bot, NOW - timedelta(days=2), text="about my refund")
    with CaptureQueriesContext(connection) as queries:
        filters = conversation_filter(
            QueryDict("period=7d&q=refund"), org=bot.organization, now=NOW
        )
        assert filters.is_valid()
        assert len(list(filters.qs)) == 1
    searched = [
        q["sql"]
        for q in queries
        if "websearch_to_tsquery" in q["sql"] and "EXPLAIN" not in q["sql"]
    ]
    assert searched
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + searched[-1])
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "analytics_message_p2026_11" in plan or "analytics_message_p2026_12" in plan
    assert "analytics_message_p2026_06" not in plan and "analytics_message_p2027" not in plan


def test_the_explorer_walks_its_page_without_parallel_workers_and_then_gets_them_back(
    transactional_db,
):
    def workers():
        with connection.cursor() as cursor:
            cursor.execute("SHOW max_parallel_workers_per_gather")
            return cursor.fetchone()[0]

    before = workers()
    with serial_plans():
        assert workers() == "0"
    assert workers() == before != "0"
