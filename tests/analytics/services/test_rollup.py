"""Rollups against hand-computed fixtures: every field, idempotency, concurrency, late data, DST."""

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections

from analytics import sketch
from analytics.live_keys import org_key
from analytics.models import (
    BotDailyMetrics,
    BotHourlyRollup,
    ConversationMetrics,
    OrgHourlyUsage,
    RollupDirtyDay,
    RollupDirtyHour,
)
from analytics.selectors import rollup_pending_hours
from analytics.services.ingest import events_ingest
from analytics.services.rollup import (
    conversation_metrics_build,
    conversation_metrics_build_many,
    conversation_metrics_stale,
    rollup_build_daily,
    rollup_build_hourly,
    rollup_due_days,
    rollup_due_hours,
)
from analytics.timeutil import org_day_bounds
from tests.factories import (
    ActivityFactory,
    BotFactory,
    ConversationFactory,
    MessageFactory,
    OrganizationFactory,
)

H = datetime(2026, 11, 20, 10, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return H + timedelta(minutes=minutes)


def b(ms: float) -> str:
    return str(sketch.bucket_of(ms))


def hourly_rows(org):
    return {r["bot_id"]: r for r in BotHourlyRollup.objects.for_org(org).filter(hour=H).values()}


def without(row, *fields):
    return {k: v for k, v in row.items() if k not in fields}


@pytest.fixture
def hour_data(org):
    """Two bots with data in hour H, one without; every figure below is counted by hand."""
    a = BotFactory(organization=org, slug="a")
    bb = BotFactory(organization=org, slug="b")
    BotFactory(organization=org, slug="idle")
    c1 = ConversationFactory(
        bot=a, customer="Ana", started_at=at(5), ended_at=at(40), status="resolved", csat=5
    )
    c2 = ConversationFactory(
        bot=a,
        customer="Ben",
        started_at=at(-10),
        ended_at=at(30),
        status="escalated",
        handoff=True,
        csat=2,
    )
    c3 = ConversationFactory(bot=bb, customer="Ana", started_at=at(15))
    msg = MessageFactory
    msg(conversation=c2, direction="inbound", created_at=at(-5), response_time_ms=None, outcome="")
    msg(
        conversation=c1,
        direction="inbound",
        created_at=at(5),
        response_time_ms=None,
        outcome="",
        tokens=0,
        cost_usd=0,
        kb_hit=None,
    )
    msg(
        conversation=c1,
        created_at=at(6),
        response_time_ms=800,
        outcome="success",
        tokens=100,
        cost_usd=Decimal("0.001"),
        kb_hit=True,
    )
    msg(
        conversation=c1,
        direction="inbound",
        created_at=at(10),
        response_time_ms=None,
        outcome="",
        tokens=0,
        cost_usd=0,
        kb_hit=None,
    )
    msg(
        conversation=c1,
        created_at=at(11),
        response_time_ms=1200,
        outcome="failed",
        tokens=50,
        cost_usd=Decimal("0.0005"),
        kb_hit=None,
    )
    msg(
        conversation=c2,
        created_at=at(1),
        response_time_ms=300,
        outcome="fallback",
        tokens=20,
        cost_usd=Decimal("0.0002"),
        kb_hit=False,
    )
    msg(conversation=c1, created_at=at(60), response_time_ms=999, tokens=7)  # the next hour
    msg(
        conversation=c3,
        direction="inbound",
        created_at=at(15),
        response_time_ms=None,
        outcome="",
        tokens=0,
        cost_usd=0,
    )
    msg(
        conversation=c3,
        created_at=at(16),
        response_time_ms=2000,
        outcome="",
        tokens=10,
        cost_usd=0,
        kb_hit=None,
    )
    ActivityFactory(bot=a, kind="call", value=None, created_at=at(20))
    ActivityFactory(bot=a, kind="booking", value=Decimal("120.00"), created_at=at(50))
    ActivityFactory(bot=a, kind="email", value=None, created_at=at(61))  # the next hour
    return {"a": a, "b": bb, "c1": c1, "c2": c2, "c3": c3}


def test_it_rolls_up_an_hour_exactly(org, hour_data, redis_client):
    redis_client.hset(org_key(org.pk, "u", "2026112010"), mapping={"ingest_requests": 7})
    RollupDirtyHour.objects.create(organization=org, hour=H)
    result = rollup_build_hourly(org_id=org.pk, hour=H)
    assert (result.bots, result.written, result.removed) == (2, 2, 0)

    a, bb = hour_data["a"], hour_data["b"]
    rows = hourly_rows(org)
    assert set(rows) == {a.pk, bb.pk}  # the idle bot has no row: no data, no row
    assert without(rows[a.pk], "id", "updated_at") == {
        "organization_id": org.pk,
        "bot_id": a.pk,
        "hour": H,
        "messages_in": 2,
        "messages_out": 3,
        "conversations_started": 1,
        "conversations_ended": 2,
        "duration_sum_seconds": 35 * 60 + 40 * 60,  # c1 and c2 ended in the hour
        "successes": 1,
        "failures": 1,
        "fallbacks": 1,
        "handoffs": 1,
        "kb_hits": 1,
        "kb_misses": 1,
        "tokens": 170,
        "cost_usd": Decimal("0.001700"),
        "response_count": 3,
        "response_sum_ms": 2300,
        "response_hist": {b(800): 1, b(1200): 1, b(300): 1},
        "csat_sum": 7,
        "csat_count": 2,
        "calls": 1,
        "bookings": 1,
        "emails": 0,
        "tasks": 0,
        "revenue": Decimal("120.00"),
    }
    assert without(rows[bb.pk], "id", "updated_at") == {
        "organization_id": org.pk,
        "bot_id": bb.pk,
        "hour": H,
        "messages_in": 1,
        "messages_out": 1,
        "conversations_started": 1,
        "conversations_ended": 0,
        "duration_sum_seconds": 0,
        "successes": 1,  # a reply without an outcome counts as a success, as on the live cards
        "failures": 0,
        "fallbacks": 0,
        "handoffs": 0,
        "kb_hits": 0,
        "kb_misses": 0,
        "tokens": 10,
        "cost_usd": Decimal("0"),
        "response_count": 1,
        "response_sum_ms": 2000,
        "response_hist": {b(2000): 1},
        "csat_sum": 0,
        "csat_count": 0,
        "calls": 0,
        "bookings": 0,
        "emails": 0,
        "tasks": 0,
        "revenue": Decimal("0"),
    }
    usage = OrgHourlyUsage.objects.for_org(org).values().get(hour=H)
    assert without(usage, "id", "updated_at") == {
        "organization_id": org.pk,
        "hour": H,
        "messages_sent": 4,
        "messages_received": 3,
        "conversations_started": 2,
        "conversations_ended": 2,
        "active_users": 2,  # Ana (two conversations) and Ben
        "bots_active": 2,
        "most_active_bot_id": a.pk,
        "api_calls": 7,
        "ingest_requests": 7,
        "tokens": 180,
        "cost_usd": Decimal("0.001700"),
    }
    assert not RollupDirtyHour.objects.exists()  # the mark is consumed with the build
    # the hour's org-local day is marked for the daily run
    assert list(RollupDirtyDay.objects.values_list("date", flat=True)) == [date(2026, 11, 20)]


def test_the_sql_histogram_buckets_match_the_sketch(org):
    bot = BotFactory(organization=org)
    conv = ConversationFactory(bot=bot, started_at=at(0))
    values = [0, 1, 2, 3, 7, 99, 100, 101, 849, 850, 1000, 4321, 59_999, 60_000, 3_600_000]
    for v in values:
        MessageFactory(conversation=conv, created_at=at(1), response_time_ms=v)
    rollup_build_hourly(org_id=org.pk, hour=H)
    row = BotHourlyRollup.objects.for_org(org).get()
    assert row.response_hist == sketch.histogram_of(values)


def test_a_rerun_leaves_identical_rows(org, hour_data):
    rollup_build_hourly(org_id=org.pk, hour=H)
    first = list(BotHourlyRollup.objects.for_org(org).order_by("bot_id").values())
    usage = list(OrgHourlyUsage.objects.for_org(org).values())
    again = rollup_build_hourly(org_id=org.pk, hour=H)
    assert again.written == 0  # nothing changed: not even updated_at is rewritten
    assert list(BotHourlyRollup.objects.for_org(org).order_by("bot_id").values()) == first
    assert list(OrgHourlyUsage.objects.for_org(org).values()) == usage


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_leave_the_same_rows_as_one_run():
    org = OrganizationFactory(slug="conc")
    bot = BotFactory(organization=org)
    for i in range(40):
        conv = ConversationFactory(bot=bot, started_at=at(i), customer=f"c{i % 7}")
        for j in range(5):
            MessageFactory(conversation=conv, created_at=at(i + j / 10), response_time_ms=100 * j)
    errors = []

    def run():
        try:
            rollup_build_hourly(org_id=org.pk, hour=H)
            rollup_build_daily(org_id=org.pk, date=H.date())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    hourly = list(BotHourlyRollup.objects.for_org(org).values())
    daily = list(BotDailyMetrics.objects.for_org(org).values())
    usage = list(OrgHourlyUsage.objects.for_org(org).values())
    assert len(hourly) == len(daily) == len(usage) == 1
    assert hourly[0]["messages_out"] == 200 and usage[0]["active_users"] == 7
    BotHourlyRollup.objects.all().delete()
    BotDailyMetrics.objects.all().delete()
    OrgHourlyUsage.objects.all().delete()
    rollup_build_hourly(org_id=org.pk, hour=H)
    rollup_build_daily(org_id=org.pk, date=H.date())

    def strip(rows):
        return [without(r, "id", "updated_at") for r in rows]

    assert strip(BotHourlyRollup.objects.for_org(org).values()) == strip(hourly)
    assert strip(BotDailyMetrics.objects.for_org(org).values()) == strip(daily)
    assert strip(OrgHourlyUsage.objects.for_org(org).values()) == strip(usage)


def test_a_bot_whose_data_is_gone_loses_its_row_and_an_empty_hour_has_none(org, hour_data):
    rollup_build_hourly(org_id=org.pk, hour=H)
    hour_data["c3"].delete()  # cascades to bot b's messages in the hour
    result = rollup_build_hourly(org_id=org.pk, hour=H)
    assert result.removed == 1 and set(hourly_rows(org)) == {hour_data["a"].pk}
    empty = rollup_build_hourly(org_id=org.pk, hour=H - timedelta(hours=5))
    assert empty.bots == 0
    assert not OrgHourlyUsage.objects.for_org(org).filter(hour=H - timedelta(hours=5)).exists()


def test_it_refuses_an_hour_that_is_not_whole(org):
    with pytest.raises(ValueError):
        rollup_build_hourly(org_id=org.pk, hour=at(30))


# --- daily -----------------------------------------------------------------------------------


def test_it_builds_daily_bot_metrics_exactly(org):
    bot = BotFactory(organization=org, slug="dialer")
    other = BotFactory(organization=org, slug="other")
    day = date(2026, 11, 20)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    c1 = ConversationFactory(
        bot=bot,
        started_at=start + timedelta(hours=1),
        ended_at=start + timedelta(hours=1, minutes=10),
        status="resolved",
        csat=4,
        call_outcome="answered",
    )
    c2 = ConversationFactory(
        bot=bot,
        started_at=start - timedelta(hours=2),  # the day before
        ended_at=start + timedelta(hours=2),
        status="escalated",
        handoff=True,
        call_outcome="converted",
    )
    ConversationFactory(bot=bot, started_at=start + timedelta(hours=23), ended_at=None)
    ConversationFactory(
        bot=bot,
        started_at=start + timedelta(hours=5),
        ended_at=start + timedelta(hours=5, seconds=30),
        status="unresolved",
        csat=1,
        call_outcome="no_answer",
    )
    rts = [
        (100, "success", True),
        (200, "success", True),
        (300, "failed", None),
        (400, "fallback", False),
        (1000, "", True),
    ]
    for i, (rt, outcome, kb) in enumerate(rts):
        conv = c1 if i < 3 else c2
        MessageFactory(
            conversation=conv,
            direction="inbound",
            created_at=start + timedelta(hours=3),
            response_time_ms=None,
            outcome="",
            tokens=0,
            cost_usd=0,
            kb_hit=None,
        )
        MessageFactory(
            conversation=conv,
            created_at=start + timedelta(hours=3, seconds=i),
            response_time_ms=rt,
            outcome=outcome,
            tokens=100 * (i + 1),
            cost_usd=Decimal("0.001"),
            kb_hit=kb,
        )
    MessageFactory(conversation=c1, created_at=start + timedelta(days=1))  # the next day
    result = rollup_build_daily(org_id=org.pk, date=day)
    assert (result.hours, result.bots) == (24, 1)
    row = BotDailyMetrics.objects.for_org(org).values().get()
    assert row["bot_id"] == bot.pk and other.pk != bot.pk
    assert without(row, "id", "updated_at", "organization_id", "bot_id") == {
        "date": day,
        "total_conversations": 3,  # started on the day (c2 started the day before)
        "total_messages": 10,
        "messages_in": 5,
        "messages_out": 5,
        "avg_response_time_ms": 400.0,
        "p50_response_time_ms": 300.0,
        "p95_response_time_ms": pytest.approx(880.0),  # 400 + 0.8 * (1000 - 400)
        "p99_response_time_ms": pytest.approx(976.0),
        # the day's histogram, in the sketch's buckets (merged for ranges of whole days)
        "response_hist": sketch.histogram_of(rt for rt, _, _ in rts),
        "success_rate": 60.0,  # 2 successes + 1 reply without outcome, of 5
        "error_rate": 20.0,
        "fallback_rate": 20.0,
        "handoff_rate": pytest.approx(100 / 3),  # c2 of the 3 conversations ended on the day
        "kb_hit_rate": 75.0,  # 3 hits of 4 known
        "total_tokens": 1500,
        "avg_tokens_per_conversation": 750.0,  # two conversations had messages
        "total_cost_usd": Decimal("0.005000"),
        "cost_per_conversation_usd": Decimal("0.002500"),
        "avg_duration_seconds": pytest.approx((600 + 4 * 3600 + 30) / 3),
        "avg_messages_per_conversation": 5.0,
        "csat_avg": 2.5,
        "call_attempts": 3,
        "calls_answered": 1,
        "calls_busy": 0,
        "calls_no_answer": 1,
        "calls_failed": 0,
        "calls_converted": 1,
        "calls_opt_out": 0,
    }
    again = rollup_build_daily(org_id=org.pk, date=day)
    assert again.written == 0
    assert rollup_build_daily(org_id=org.pk, date=day + timedelta(days=3)).bots == 0


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("Europe/Berlin", date(2026, 3, 29), 23),
        ("Europe/Berlin", date(2026, 10, 25), 25),
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("America/New_York", date(2026, 11, 2), 24),
    ],
)
def test_dst_days_have_23_and_25_hours(db, tz, day, hours):
    org = OrganizationFactory(timezone=tz)
    bot = BotFactory(organization=org)
    start, end = org_day_bounds(org, day)
    assert (end - start) == timedelta(hours=hours)
    conv = ConversationFactory(bot=bot, started_at=start)
    # one message in every UTC hour of the local day, plus one just outside on each side
    for h in range(hours):
        MessageFactory(conversation=conv, created_at=start + timedelta(hours=h, minutes=30))
    MessageFactory(conversation=conv, created_at=start - timedelta(seconds=1))
    MessageFactory(conversation=conv, created_at=end)
    result = rollup_build_daily(org_id=org.pk, date=day)
    assert result.hours == hours
    daily = BotDailyMetrics.objects.for_org(org).get(date=day)
    assert daily.messages_out == hours and daily.total_conversations == 1
    for h in range(-1, hours + 1):
        rollup_build_hourly(org_id=org.pk, hour=start + timedelta(hours=h))
    in_day = BotHourlyRollup.objects.for_org(org).filter(hour__gte=start, hour__lt=end)
    assert in_day.count() == hours
    assert sum(r.messages_out for r in in_day) == daily.messages_out
    # the hours at either edge belong to the neighbouring local days
    assert set(RollupDirtyDay.objects.for_org(org).values_list("date", flat=True)) == {
        day - timedelta(days=1),
        day,
        day + timedelta(days=1),
    }


# --- late data and what is due ----------------------------------------------------------------


def event(kind, at_, **fields):
    return {
        "id": str(uuid.uuid4()),
        "type": kind,
        "bot": "support-bot",
        "timestamp": at_.isoformat(),
        **fields,
    }


def test_late_data_marks_its_hour_and_ends_up_in_the_rollups(org, bot):
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    past = now.replace(minute=0) - timedelta(hours=3)
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
                response_time_ms=500,
                outcome="success",
            ),
            event("message", now, conversation="y", direction="inbound"),  # the current hour
        ],
        now=now,
    )
    assert set(RollupDirtyHour.objects.for_org(org).values_list("hour", flat=True)) == {
        past,
        now.replace(minute=0),
    }
    # the hourly run: complete marked hours only (the current hour is served by live state)
    assert rollup_due_hours(now=now) == [(org.pk, past)]
    assert rollup_pending_hours(org_id=org.pk, start=past, end=now) == [past, now.replace(minute=0)]
    rollup_build_hourly(org_id=org.pk, hour=past)
    assert rollup_due_hours(now=now) == []
    row = BotHourlyRollup.objects.for_org(org).get(hour=past)
    assert (row.messages_in, row.messages_out, row.response_sum_ms) == (1, 1, 500)

    # late data for the rolled-up hour marks it again; the next run picks it up
    events_ingest(
        org=org,
        events=[
            event(
                "message",
                past + timedelta(minutes=40),
                conversation="x",
                direction="outbound",
                response_time_ms=700,
                outcome="failed",
            ),
            event(
                "conversation.ended",
                past + timedelta(minutes=41),
                conversation="x",
                status="resolved",
                csat=4,
            ),
        ],
        now=now,
    )
    assert rollup_due_hours(now=now) == [(org.pk, past)]
    rollup_build_hourly(org_id=org.pk, hour=past)
    row.refresh_from_db()
    assert (row.messages_out, row.failures, row.response_sum_ms) == (2, 1, 1200)
    assert (row.conversations_ended, row.csat_sum) == (1, 4)
    assert row.response_hist == sketch.histogram_of([500, 700])


def test_days_are_due_at_one_in_the_morning_org_time(db):
    berlin = OrganizationFactory(timezone="Europe/Berlin")
    utc = OrganizationFactory(timezone="UTC")
    day = date(2026, 11, 20)
    RollupDirtyDay.objects.create(organization=berlin, date=day)
    RollupDirtyDay.objects.create(organization=utc, date=day)
    # 00:30 UTC = 01:30 in Berlin: Berlin's day is due, UTC's is not yet
    assert rollup_due_days(now=datetime(2026, 11, 21, 0, 30, tzinfo=UTC)) == [(berlin.pk, day)]
    assert rollup_due_days(now=datetime(2026, 11, 21, 1, 0, tzinfo=UTC)) == [
        (berlin.pk, day),
        (utc.pk, day),
    ]
    rollup_build_daily(org_id=berlin.pk, date=day)
    assert rollup_due_days(now=datetime(2026, 11, 21, 1, 0, tzinfo=UTC)) == [(utc.pk, day)]


# --- conversations ---------------------------------------------------------------------------


def test_it_builds_conversation_metrics_exactly(org, hour_data):
    c1, c3 = hour_data["c1"], hour_data["c3"]
    conversation_metrics_build(conversation_id=c1.pk)
    row = ConversationMetrics.objects.for_org(org).values().get(conversation_id=c1.pk)
    assert without(row, "id", "updated_at", "organization_id", "conversation_id") == {
        "bot_id": hour_data["a"].pk,
        "started_at": at(5),
        "ended_at": at(40),
        "duration_seconds": 35 * 60,
        "total_messages": 5,  # four in the hour and one in the next
        "user_messages": 2,
        "bot_messages": 3,
        "avg_response_time_ms": pytest.approx((800 + 1200 + 999) / 3),
        "p50_response_time_ms": 999.0,
        "p95_response_time_ms": pytest.approx(999 + 0.9 * 201),
        "p99_response_time_ms": pytest.approx(999 + 0.98 * 201),
        "successful_responses": 2,
        "failed_responses": 1,
        "fallback_responses": 0,
        "handoff": False,
        "kb_hits": 1,  # the factory leaves kb_hit unknown (None) on the 999 ms reply
        "kb_misses": 0,
        "tokens": 157,
        "cost_usd": Decimal("0.002000"),
        "resolution_status": "resolved",
        "csat": 5,
    }
    written = conversation_metrics_build_many(org_id=org.pk, conversation_ids=[c1.pk, c3.pk])
    assert written == 2
    active = ConversationMetrics.objects.get(conversation=c3)
    assert active.ended_at is None and active.duration_seconds is None
    assert active.resolution_status == "active"


def test_the_sweep_finds_missing_and_stale_conversation_metrics(org, hour_data):
    now = at(120)
    stale = conversation_metrics_stale(
        org_id=org.pk, now=now, ended_within=timedelta(hours=3), active_within=timedelta(days=1)
    )
    assert stale == sorted(c.pk for c in hour_data.values() if hasattr(c, "external_id"))
    conversation_metrics_build_many(org_id=org.pk, conversation_ids=stale)
    assert (
        conversation_metrics_stale(
            org_id=org.pk, now=now, ended_within=timedelta(hours=3), active_within=timedelta(days=1)
        )
        == []
    )
    with connection.cursor() as cursor:  # the conversation moves on after its metrics
        cursor.execute(
            "UPDATE analytics_conversation SET last_activity_at = now() + interval '1 minute'"
            " WHERE id = %s",
            [hour_data["c3"].pk],
        )
    assert conversation_metrics_stale(
        org_id=org.pk, now=now, ended_within=timedelta(hours=3), active_within=timedelta(days=1)
    ) == [hour_data["c3"].pk]
