"""Live state: the snapshot a dashboard reads right after a batch, and its rebuild from PostgreSQL."""

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from analytics.models import Organization
from analytics.selectors import live_feed, live_snapshot
from analytics.services import live
from analytics.services.ingest import events_ingest
from analytics.services.live import live_rebuild, live_recover
from tests.factories import BotFactory


def message(conv, direction, at, **fields):
    return {
        "id": str(uuid.uuid4()),
        "type": "message",
        "bot": "support-bot",
        "conversation": conv,
        "direction": direction,
        "timestamp": at.isoformat(),
        **fields,
    }


@pytest.fixture
def now():
    return datetime.now(UTC)


def exact(values, q):
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def test_the_snapshot_reflects_a_batch_at_once(org, bot, now):
    times = [200, 450, 800, 1200, 3000, 9000, 650, 700, 720, 900]
    outcomes = ["success"] * 8 + ["failed", "fallback"]
    events = []
    for i, (rt, outcome) in enumerate(zip(times, outcomes, strict=True)):
        events.append(message(f"c{i % 3}", "inbound", now - timedelta(minutes=5), customer="Ana"))
        events.append(
            message(
                f"c{i % 3}",
                "outbound",
                now - timedelta(minutes=4),
                response_time_ms=rt,
                outcome=outcome,
                tokens=100,
                cost_usd=0.001,
            )
        )
    # the previous hour: 4 messages, all successful, slower
    for _ in range(2):
        events.append(message("old", "inbound", now - timedelta(minutes=90)))
        events.append(
            message(
                "old",
                "outbound",
                now - timedelta(minutes=89),
                response_time_ms=2000,
                outcome="success",
            )
        )
    events.append(
        {
            "id": str(uuid.uuid4()),
            "type": "conversation.ended",
            "bot": "support-bot",
            "conversation": "c2",
            "status": "resolved",
        }
    )
    result = events_ingest(org=org, events=events, now=now)
    assert result.accepted == len(events) and result.live == "ok"

    snap = live_snapshot(org=org, now=now)
    assert snap.active_now == 2  # c0 and c1; c2 ended; "old" is quiet for over 30 minutes
    assert snap.messages_last_hour.value == 20 and snap.messages_last_hour.previous == 4
    assert snap.messages_last_hour.change == pytest.approx(400.0)
    assert snap.avg_response_ms.value == pytest.approx(sum(times) / len(times))
    assert snap.avg_response_ms.previous == pytest.approx(2000)
    for q, figure in (
        (0.5, snap.p50_response_ms),
        (0.95, snap.p95_response_ms),
        (0.99, snap.p99_response_ms),
    ):
        assert figure.value == pytest.approx(exact(times, q), rel=0.02)
    assert snap.success_rate.value == pytest.approx(80.0) and snap.success_rate.previous == 100.0
    assert snap.tokens_last_hour.value == 1000
    assert snap.cost_last_hour_usd.value == pytest.approx(0.01)

    bot_snap = live_snapshot(org=org, bot=bot, now=now)
    assert bot_snap.messages_last_hour.value == 20
    quiet = BotFactory(organization=org)
    assert live_snapshot(org=org, bot=quiet, now=now).messages_last_hour.value == 0


def test_the_feed_keeps_the_latest_50_newest_first_with_raw_text(org, bot, now):
    events = [
        message(
            f"c{i}",
            "inbound",
            now - timedelta(seconds=100 - i),
            text=f"<b>msg {i}</b>",
            customer=f"Customer {i}",
        )
        for i in range(60)
    ]
    events_ingest(org=org, events=events, now=now)
    feed = live_feed(org=org, limit=50)
    assert len(feed) == 50
    assert feed[0]["text"] == "<b>msg 59</b>" and feed[0]["customer"] == "Customer 59"
    assert feed[-1]["text"] == "<b>msg 10</b>"
    assert feed[0]["bot"] == "support-bot" and feed[0]["kind"] == "message"


def test_a_rebuild_from_postgresql_reproduces_the_live_figures(
    org, bot, now, redis_client, settings
):
    events = []
    for i in range(30):
        events.append(message(f"c{i % 4}", "inbound", now - timedelta(minutes=i)))
        events.append(
            message(
                f"c{i % 4}",
                "outbound",
                now - timedelta(minutes=i),
                response_time_ms=300 + 40 * i,
                outcome="success" if i % 5 else "failed",
                tokens=50,
                cost_usd=0.0002,
            )
        )
    events_ingest(org=org, events=events, now=now)
    before = live_snapshot(org=org, now=now)
    for key in redis_client.scan_iter(f"{settings.LIVE_KEY_PREFIX}:*"):
        redis_client.delete(key)  # Redis lost everything
    assert live_snapshot(org=org, now=now).messages_last_hour.value == 0
    live_rebuild(org=org, now=now)
    assert live_snapshot(org=org, now=now) == before


def test_a_batch_that_lands_while_a_rebuild_reads_postgresql_is_kept(org, bot, now, monkeypatch):
    """A rebuild used to delete the counters and write PostgreSQL's figures: another process's
    batch counted in Redis meanwhile (after the read) was lost until the counters expired."""
    events_ingest(org=org, events=[message("c1", "inbound", now) for _ in range(5)], now=now)
    real_write = live._Accumulator.write

    def another_batch_lands_first(self, pipe, **options):
        monkeypatch.setattr(live._Accumulator, "write", real_write)
        events_ingest(org=org, events=[message("c2", "inbound", now) for _ in range(3)], now=now)
        real_write(self, pipe, **options)

    monkeypatch.setattr(live._Accumulator, "write", another_batch_lands_first)
    live_rebuild(org=org, now=now)
    assert live_snapshot(org=org, now=now).messages_last_hour.value == 8


def test_pulse_notices_a_redis_that_lost_everything_and_rebuilds_every_org(
    org, bot, other_org, now, redis_client, settings
):
    """No batch failed (Redis restarted between two), so no org was marked stale by ingestion:
    the next pulse tick (live_recover) still finds out and rebuilds every org from PostgreSQL."""
    BotFactory(organization=other_org, slug="support-bot")
    for tenant in (org, other_org):
        events_ingest(
            org=tenant,
            events=[message("c1", "inbound", now - timedelta(minutes=i)) for i in range(12)],
            now=now,
        )
    live_recover(now=now)  # the first tick: a fresh Redis holds no live state yet
    before = {o.pk: live_snapshot(org=o, now=now) for o in (org, other_org)}
    assert before[org.pk].messages_last_hour.value == 12
    assert live_recover(now=now) == 0  # nothing lost: one Redis round trip, no rebuild

    for key in redis_client.scan_iter(f"{settings.LIVE_KEY_PREFIX}:*"):
        redis_client.delete(key)  # restarted empty
    assert live_recover(now=now) == 2
    for tenant in (org, other_org):
        tenant.refresh_from_db()
        assert tenant.live_stale_since is None
        assert live_snapshot(org=tenant, now=now) == before[tenant.pk]
    assert not Organization.objects.filter(live_stale_since__isnull=False).exists()


def test_activities_gauges_and_the_dirty_mark_are_live_at_once(
    org, bot, now, redis_client, settings
):
    from analytics.live_keys import dirty_key
    from analytics.selectors import live_activities, live_gauges
    from tests.factories import CampaignFactory

    BotFactory(organization=org, slug="jade", name="Jade", kind="ai_employee")
    CampaignFactory(organization=org, slug="winter", bot=bot)
    events = [
        {
            "id": str(uuid.uuid4()),
            "type": "activity",
            "bot": "jade",
            "kind": "booking",
            "description": "Booked check-up for Ana",
            "customer": "Ana",
            "value": 150,
            "timestamp": (now - timedelta(seconds=30 - i)).isoformat(),
        }
        for i in range(3)
    ] + [
        {
            "id": str(uuid.uuid4()),
            "type": "gauge",
            "bot": "support-bot",
            "name": "queue_depth",
            "value": depth,
            "campaign": "winter",
            "timestamp": (now - timedelta(seconds=10 - i)).isoformat(),
        }
        for i, depth in enumerate((40, 38))
    ]
    redis_client.srem(dirty_key(), org.pk)
    events_ingest(org=org, events=events, now=now)
    acts = live_activities(org=org)
    assert len(acts) == 3 and acts[0]["bot_name"] == "Jade" and acts[0]["value"] == 150.0
    assert live_gauges(org=org)["winter:queue_depth"]["value"] == 38.0
    assert redis_client.sismember(dirty_key(), org.pk)


def test_ai_employee_cards_count_todays_work_and_show_status(org, now):
    from analytics.selectors import ai_employee_cards

    luna = BotFactory(
        organization=org, slug="luna", name="Luna", kind="ai_employee", persona="Customer Success"
    )
    BotFactory(organization=org, slug="flora", name="Flora", kind="ai_employee")
    BotFactory(organization=org, slug="support-bot", kind="chatbot")  # not an employee
    if not 1 <= now.hour <= 22:  # "30 minutes ago" and "30 minutes later" must both be today
        now = (now - timedelta(hours=3)).replace(hour=12)

    def act(kind, minutes_ago, value=None, text="did it"):
        return {
            "id": str(uuid.uuid4()),
            "type": "activity",
            "bot": "luna",
            "kind": kind,
            "description": text,
            "customer": "Ana",
            "value": value,
            "timestamp": (now - timedelta(minutes=minutes_ago)).isoformat(),
        }

    events_ingest(
        org=org,
        events=[
            act("call", 30),
            act("call", 20),
            act("booking", 3, 220, "Booked cleaning"),
            act("email", 2, text="Sent quote to Ana"),
        ],
        now=now,
    )
    cards = {c.bot.slug: c for c in ai_employee_cards(org=org, now=now)}
    assert set(cards) == {"luna", "flora"}
    luna_card = cards["luna"]
    assert (luna_card.calls, luna_card.bookings, luna_card.emails, luna_card.revenue) == (
        2,
        1,
        1,
        220.0,
    )
    assert luna_card.status == "active" and luna_card.latest["description"] == "Sent quote to Ana"
    assert cards["flora"].status == "offline" and cards["flora"].calls == 0
    assert luna.persona == "Customer Success"
    later = now + timedelta(minutes=30)
    assert {c.bot.slug: c.status for c in ai_employee_cards(org=org, now=later)}["luna"] == "idle"


def test_a_rebuild_restores_todays_employee_counts(org, now, redis_client, settings):
    from analytics.selectors import ai_employee_cards, live_activities

    BotFactory(organization=org, slug="jade", name="Jade", kind="ai_employee")
    events_ingest(
        org=org,
        events=[
            {
                "id": str(uuid.uuid4()),
                "type": "activity",
                "bot": "jade",
                "kind": "booking",
                "description": "Booked",
                "customer": "Ben",
                "value": 150,
                "timestamp": (now - timedelta(minutes=1)).isoformat(),
            }
        ],
        now=now,
    )
    for key in redis_client.scan_iter(f"{settings.LIVE_KEY_PREFIX}:*"):
        redis_client.delete(key)
    live_rebuild(org=org, now=now)
    [card] = ai_employee_cards(org=org, now=now)
    assert (card.bookings, card.revenue, card.status) == (1, 150.0, "active")
    assert live_activities(org=org)[0]["description"] == "Booked"


def test_the_minute_series_counts_messages_and_p95_per_minute(org, bot, now):
    from analytics.selectors import live_minute_series

    events = [
        message(
            "c1", "outbound", now - timedelta(minutes=2), response_time_ms=rt, outcome="success"
        )
        for rt in (100, 200, 300, 400, 5000)
    ] + [message("c1", "inbound", now)]
    events_ingest(org=org, events=events, now=now)
    series = live_minute_series(org=org, points=5, now=now)
    assert len(series) == 5 and series[-1].minute.minute == now.minute
    assert [p.messages for p in series] == [0, 0, 5, 0, 1]
    assert series[2].p95_ms == pytest.approx(400, rel=0.02)  # lower-rank p95 of five values
    assert series[4].p95_ms is None  # no replies in this minute
