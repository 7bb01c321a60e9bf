"""Chart series: completed hours from the hourly rollups, the rest from the live minute keys.

Every expected value below is computed by hand from the fixture, not by the code under test.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from analytics import sketch
from analytics.selectors import (
    message_volume_series,
    period_get,
    response_time_series,
)
from analytics.services.ingest import events_ingest
from tests.factories import BotFactory, BotHourlyRollupFactory

NOW = datetime(2026, 11, 23, 14, 20, tzinfo=UTC)
H = timedelta(hours=1)


def exact(values, q):
    """Percentile with the lower-rank convention the sketch documents (like percentile_disc)."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def close(estimate, truth):
    return estimate is not None and abs(estimate - truth) <= 0.02 * truth


def rollup(bot, hour, *, inbound=0, times=(), outbound=None):
    """A BotHourlyRollup row as the rollup job would write it for these response times."""
    return BotHourlyRollupFactory(
        bot=bot,
        hour=hour,
        messages_in=inbound,
        messages_out=len(times) if outbound is None else outbound,
        successes=len(times),
        response_count=len(times),
        response_sum_ms=sum(times),
        response_hist=sketch.histogram_of(times),
    )


def ingest(org, bot, at, *, times=(), inbound=0):
    """Outbound replies with these response times and `inbound` customer messages, live."""
    events = [
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": bot.slug,
            "conversation": f"c-{at:%H%M}",
            "direction": "outbound",
            "response_time_ms": rt,
            "outcome": "success",
            "timestamp": at.isoformat(),
        }
        for rt in times
    ] + [
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": bot.slug,
            "conversation": f"c-{at:%H%M}",
            "direction": "inbound",
            "text": "hello",
            "timestamp": at.isoformat(),
        }
        for _ in range(inbound)
    ]
    result = events_ingest(org=org, events=events, now=NOW)
    assert result.accepted == len(events) and result.live == "ok", result


@pytest.fixture
def bots(org):
    return (
        BotFactory(organization=org, slug="alpha", name="Alpha"),
        BotFactory(organization=org, slug="beta", name="Beta"),
    )


@pytest.fixture
def day(org, bots, other_org):
    """A UTC org's last hours: 10:00 and 12:00 rolled up, 13:00 not yet, 14:00 current, 11:00 empty.

    | hour  | source          | alpha replies (ms)   | beta replies (ms) | inbound |
    | 10:00 | rollup (+ live) | 700, 900             |                   | 3       |
    | 11:00 | nothing         |                      |                   |         |
    | 12:00 | rollup          | 500, 800, 1200, 1500 | 2000, 4000        | 10 + 2  |
    | 13:00 | live only       | 300, 600             |                   | 1       |
    | 14:00 | live (current)  | 100, 200, 900        |                   | 2 (beta)|
    """
    alpha, beta = bots
    # 10:00 is in the live keys too (it arrived live, then was rolled up): read once, not twice.
    ingest(org, alpha, NOW.replace(hour=10, minute=30), times=(700, 900), inbound=3)
    rollup(alpha, NOW.replace(hour=10, minute=0), times=(700, 900), inbound=3)
    rollup(alpha, NOW.replace(hour=12, minute=0), times=(500, 800, 1200, 1500), inbound=10)
    rollup(beta, NOW.replace(hour=12, minute=0), times=(2000, 4000), inbound=2)
    ingest(org, alpha, NOW.replace(hour=13, minute=10), times=(300,), inbound=1)
    ingest(org, alpha, NOW.replace(hour=13, minute=40), times=(600,))
    ingest(org, alpha, NOW.replace(hour=14, minute=5), times=(100, 200, 900))
    ingest(org, beta, NOW.replace(hour=14, minute=19), inbound=2)
    # Another org's rollup in the same hour stays out.
    rollup(
        BotFactory(organization=other_org), NOW.replace(hour=12, minute=0), times=(9, 9), inbound=99
    )


def by_hour(points):
    return {p.start.astimezone(UTC).hour: p for p in points[-5:]}


def test_it_reads_24_hourly_buckets_from_rollups_and_live_minutes(org, day):
    points = response_time_series(org=org, period="24h", now=NOW)
    assert len(points) == 24
    assert points[-1].start == datetime(2026, 11, 23, 14, tzinfo=UTC)
    assert points[0].start == datetime(2026, 11, 22, 15, tzinfo=UTC)
    hours = by_hour(points)

    merged_12 = [500, 800, 1200, 1500, 2000, 4000]  # both bots' histograms merged
    p = hours[12]
    assert p.responses == 6 and p.avg_ms == pytest.approx(10000 / 6)
    assert close(p.p50_ms, exact(merged_12, 0.5)) and exact(merged_12, 0.5) == 1200
    assert close(p.p95_ms, exact(merged_12, 0.95)) and exact(merged_12, 0.95) == 2000
    assert close(p.p99_ms, exact(merged_12, 0.99))

    p = hours[13]  # no rollup row yet: the live minutes
    assert p.responses == 2 and p.avg_ms == pytest.approx(450)
    assert close(p.p50_ms, exact([300, 600], 0.5)) and close(p.p95_ms, exact([300, 600], 0.95))

    p = hours[14]  # the current hour
    assert p.responses == 3 and p.avg_ms == pytest.approx(400)
    assert close(p.p50_ms, 200) and close(p.p99_ms, exact([100, 200, 900], 0.99))

    p = hours[10]  # rolled up and still live: counted once
    assert p.responses == 2 and p.avg_ms == pytest.approx(800)

    p = hours[11]  # no data at all: a gap, not an interpolation
    assert (p.responses, p.avg_ms, p.p50_ms, p.p95_ms, p.p99_ms) == (0, None, None, None, None)
    assert all(q.p95_ms is None for q in points[:-5])


def test_it_counts_inbound_and_outbound_per_hour_with_empty_hours_as_zero(org, day):
    points = message_volume_series(org=org, period="24h", now=NOW)
    assert len(points) == 24
    hours = by_hour(points)
    assert [(hours[h].inbound, hours[h].outbound) for h in (10, 11, 12, 13, 14)] == [
        (3, 2),
        (0, 0),
        (12, 6),
        (1, 2),
        (2, 3),
    ]
    assert all((q.inbound, q.outbound) == (0, 0) for q in points[:-5])


def test_it_narrows_to_the_given_bots(org, bots, day):
    alpha, beta = bots
    hours = by_hour(response_time_series(org=org, period="24h", bots=[beta], now=NOW))
    assert hours[12].responses == 2 and close(hours[12].p50_ms, 2000)
    assert hours[13].responses == 0 and hours[13].p50_ms is None  # beta's live key is empty
    volume = by_hour(message_volume_series(org=org, period="24h", bots=[beta], now=NOW))
    assert (volume[14].inbound, volume[14].outbound) == (2, 0)
    assert (volume[12].inbound, volume[12].outbound) == (2, 2)


def test_it_refuses_a_bot_of_another_org(org, other_org, day):
    stranger = BotFactory(organization=other_org)
    with pytest.raises(ValueError):
        message_volume_series(org=org, period="24h", bots=[stranger], now=NOW)


def test_7d_merges_three_hour_buckets_across_rollups_and_live(org, day):
    points = response_time_series(org=org, period="7d", now=NOW)
    assert len(points) == 56
    assert [p.start.hour for p in points[-3:]] == [6, 9, 12]
    last = points[-1]  # 12:00-15:00: the 12:00 rollups, 13:00 and 14:00 live
    values = [500, 800, 1200, 1500, 2000, 4000, 300, 600, 100, 200, 900]
    assert last.responses == len(values)
    assert last.avg_ms == pytest.approx(sum(values) / len(values))
    for q, estimate in ((0.5, last.p50_ms), (0.95, last.p95_ms), (0.99, last.p99_ms)):
        assert close(estimate, exact(values, q)), (q, estimate)
    nine = points[-2]  # 09:00-12:00 holds the 10:00 rollup only
    assert nine.responses == 2 and close(nine.p50_ms, 700)
    volume = message_volume_series(org=org, period="7d", now=NOW)
    assert (volume[-1].inbound, volume[-1].outbound) == (15, 11)
    assert (volume[-2].inbound, volume[-2].outbound) == (3, 2)
    assert sum(v.inbound + v.outbound for v in volume[:-2]) == 0


def test_30d_buckets_are_days_in_the_orgs_time_zone(org, bots):
    org.timezone = "Asia/Tokyo"  # UTC+9: 23:20 on 23 Nov at NOW
    org.save()
    alpha, _ = bots
    rollup(alpha, datetime(2026, 11, 23, 12, tzinfo=UTC), times=(1000,), inbound=1)  # 23 Nov 21:00
    rollup(
        alpha, datetime(2026, 11, 22, 16, tzinfo=UTC), times=(3000, 3200, 3400), inbound=2
    )  # 23 Nov 01:00
    rollup(alpha, datetime(2026, 11, 22, 14, tzinfo=UTC), times=(50,), inbound=4)  # 22 Nov 23:00
    rollup(alpha, datetime(2026, 10, 20, 12, tzinfo=UTC), times=(7,), inbound=8)  # > 30 days ago
    # older than the live minute keys (3 days): summed per bucket in SQL
    rollup(alpha, datetime(2026, 11, 13, 3, tzinfo=UTC), times=(400, 600), inbound=5)  # 13 Nov
    points = response_time_series(org=org, period="30d", now=NOW)
    assert len(points) == 30
    assert [p.start.date() for p in (points[0], points[-1])] == [
        date(2026, 10, 25),
        date(2026, 11, 23),
    ]
    assert all(p.start.hour == 0 and p.start.utcoffset() == timedelta(hours=9) for p in points)
    today, yesterday = points[-1], points[-2]
    merged = [1000, 3000, 3200, 3400]
    assert today.responses == 4 and today.avg_ms == pytest.approx(2650)
    assert close(today.p50_ms, exact(merged, 0.5)) and exact(merged, 0.5) == 3000
    assert close(today.p95_ms, exact(merged, 0.95)) and exact(merged, 0.95) == 3200
    assert yesterday.responses == 1 and close(yesterday.p50_ms, 50)
    nov_13 = points[-11]
    assert nov_13.start.date() == date(2026, 11, 13)
    assert nov_13.responses == 2 and nov_13.avg_ms == pytest.approx(500)
    assert close(nov_13.p95_ms, exact([400, 600], 0.95)) and close(nov_13.p50_ms, 400)
    assert all(p.p50_ms is None for p in points[:-2] if p is not nov_13)
    volume = message_volume_series(org=org, period="30d", now=NOW)
    assert [v.inbound for v in volume[-3:]] == [0, 4, 3]
    assert volume[-11].inbound == 5 and sum(v.inbound for v in volume[:-3]) == 5


def test_an_unknown_period_falls_back_to_24h():
    assert period_get("90d").key == "24h" and period_get(None).key == "24h"
    assert period_get("7d").bucket_hours == 3


# --- today's bot table: rollups + live == the raw answer ---------------------------------------


def _event(bot, at, type_, **fields):
    return {
        "id": str(uuid.uuid4()),
        "type": type_,
        "bot": bot.slug,
        "timestamp": at.isoformat(),
        **fields,
    }


@pytest.fixture
def kolkata_day(org, bots):
    """A UTC+05:30 org (today began at 18:30 UTC yesterday, mid-hour) with traffic all day."""
    org.timezone = "Asia/Kolkata"
    org.save()
    alpha, beta = bots
    employee = BotFactory(organization=org, slug="luna", name="Luna", kind="ai_employee")
    at = lambda d, h, m: datetime(2026, 11, d, h, m, tzinfo=UTC)  # noqa: E731
    events = []
    for i, (when, bot, replies) in enumerate(
        [
            (at(22, 18, 10), alpha, [("success", 400)]),  # yesterday there: left out
            (at(22, 18, 45), alpha, [("success", 900), ("failed", 1500)]),  # today's first minutes
            (at(22, 21, 5), beta, [("success", 300)]),
            (at(23, 2, 30), alpha, [("fallback", 2500), ("success", 700)]),
            (at(23, 9, 59), beta, [("success", 650)]),
            (at(23, 13, 15), alpha, [("success", 1200)]),  # 13:00 is not rolled up yet
            (at(23, 14, 2), beta, [("failed", 5000), ("success", 450)]),  # the current hour
        ]
    ):
        conv = f"conv-{i}"
        if i % 2:  # half start explicitly, half implicitly with their first message
            events.append(_event(bot, when, "conversation.started", conversation=conv))
        events.append(
            _event(bot, when, "message", conversation=conv, direction="inbound", text="hi")
        )
        for outcome, rt in replies:
            events.append(
                _event(
                    bot,
                    when,
                    "message",
                    conversation=conv,
                    direction="outbound",
                    text="hello",
                    outcome=outcome,
                    response_time_ms=rt,
                )
            )
    for when, kind, value in [
        (at(22, 18, 20), "booking", "90.00"),  # yesterday there
        (at(22, 23, 0), "booking", "120.50"),
        (at(23, 13, 30), "call", None),
        (at(23, 14, 10), "booking", "80.25"),
    ]:
        events.append(_event(employee, when, "activity", kind=kind, value=value))
    result = events_ingest(org=org, events=events, now=NOW)
    assert result.accepted == len(events) and result.live == "ok", result
    _roll_up_by_hand(org, skip={at(23, 13, 0), at(23, 14, 0)})


def _roll_up_by_hand(org, skip):
    """What the hourly rollup job writes, computed here from the stored rows."""
    from analytics.models import Activity, Conversation, Message

    def hour_of(t):
        return t.replace(minute=0, second=0, microsecond=0)

    rows: dict = {}

    def row(bot_id, t):
        key = (bot_id, hour_of(t))
        return rows.setdefault(key, {"times": [], "n": {}})

    def add(r, name, amount=1):
        r["n"][name] = r["n"].get(name, 0) + amount

    for m in Message.objects.for_org(org):
        r = row(m.bot_id, m.created_at)
        add(r, "messages_in" if m.direction == "inbound" else "messages_out")
        if m.outcome:
            add(
                r,
                {"success": "successes", "failed": "failures", "fallback": "fallbacks"}[m.outcome],
            )
        if m.response_time_ms is not None:
            r["times"].append(m.response_time_ms)
    for c in Conversation.objects.for_org(org):
        add(row(c.bot_id, c.started_at), "conversations_started")
    for a in Activity.objects.for_org(org):
        r = row(a.bot_id, a.created_at)
        add(r, {"call": "calls", "booking": "bookings", "email": "emails", "task": "tasks"}[a.kind])
        add(r, "revenue", a.value or 0)
    for (bot_id, hour), r in rows.items():
        if hour in skip:
            continue
        BotHourlyRollupFactory(
            bot_id=bot_id,
            organization=org,
            hour=hour,
            response_count=len(r["times"]),
            response_sum_ms=sum(r["times"]),
            response_hist=sketch.histogram_of(r["times"]),
            **r["n"],
        )


def raw_today(org):
    """The day's figures per bot straight from the raw rows (the old, scanning answer)."""
    from django.db.models import Avg, Count, Q, Sum

    from analytics.models import Activity, Conversation, Message
    from analytics.selectors import org_day_start

    since = org_day_start(org, NOW)
    answer = {}
    for bot_id, slug in org_bots(org):
        m = Message.objects.for_org(org).filter(
            bot_id=bot_id, created_at__gte=since, created_at__lte=NOW
        )
        agg = m.aggregate(
            inbound=Count("id", filter=Q(direction="inbound")),
            outbound=Count("id", filter=Q(direction="outbound")),
            ok=Count("id", filter=Q(outcome="success")),
            rated=Count("id", filter=~Q(outcome="")),
            avg=Avg("response_time_ms"),
        )
        acts = Activity.objects.for_org(org).filter(bot_id=bot_id, created_at__gte=since)
        answer[slug] = (
            Conversation.objects.for_org(org).filter(bot_id=bot_id, started_at__gte=since).count(),
            agg["inbound"],
            agg["outbound"],
            round(agg["avg"], 6) if agg["avg"] is not None else None,
            round(100 * agg["ok"] / agg["rated"], 6) if agg["rated"] else None,
            acts.count(),
            float(acts.aggregate(v=Sum("value"))["v"] or 0),
        )
    return answer


def org_bots(org):
    from analytics.models import Bot

    return Bot.objects.for_org(org).values_list("id", "slug")


def shown_today(org):
    from analytics.selectors import bot_today_list

    return {
        r.bot.slug: (
            r.conversations,
            r.messages_in,
            r.messages_out,
            round(r.avg_response_ms, 6) if r.avg_response_ms is not None else None,
            round(r.success_rate, 6) if r.success_rate is not None else None,
            r.activities,
            r.revenue,
        )
        for r in bot_today_list(org=org, now=NOW)
    }


def test_todays_table_from_rollups_and_live_equals_the_raw_answer(org, kolkata_day):
    expected = raw_today(org)
    assert expected["alpha"][:3] == (3, 3, 5)  # the fixture does what it says
    assert expected["luna"][5:] == (3, 200.75)
    assert shown_today(org) == expected


def test_todays_table_reads_message_rows_of_the_live_hours_when_redis_is_down(
    org, kolkata_day, settings
):
    expected = raw_today(org)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert shown_today(org) == expected


def test_a_rolled_up_hour_with_late_events_is_read_live_until_it_is_rebuilt(org, bots):
    from analytics.models import RollupDirtyHour
    from analytics.selectors import bot_today_list

    alpha, _ = bots
    noon = NOW.replace(hour=12, minute=0)
    ingest(org, alpha, noon.replace(minute=10), times=(500,), inbound=3)
    rollup(alpha, noon, times=(500,), inbound=3)  # the hourly run at 13:05 ...
    RollupDirtyHour.objects.filter(organization=org, hour=noon).delete()  # ... took the mark
    ingest(org, alpha, noon.replace(minute=45), inbound=1)  # late: marks 12:00 dirty again
    volume = by_hour(message_volume_series(org=org, period="24h", now=NOW))
    assert (volume[12].inbound, volume[12].outbound) == (4, 1)
    today = {r.bot.slug: r for r in bot_today_list(org=org, now=NOW)}
    assert (today["alpha"].messages_in, today["alpha"].messages_out) == (4, 1)
    RollupDirtyHour.objects.filter(organization=org, hour=noon).delete()  # rebuilt (by hand: 3)
    volume = by_hour(message_volume_series(org=org, period="24h", now=NOW))
    assert volume[12].inbound == 3  # the rollup row is trusted again


@pytest.mark.parametrize(
    ("tz", "daily_used"), [("UTC", True), ("Europe/Berlin", True), ("Asia/Kolkata", False)]
)
def test_a_range_reads_whole_days_from_daily_histograms_and_the_rest_hourly(db, tz, daily_used):
    from analytics.models import RollupDirtyDay
    from analytics.selectors import bot_period_summary
    from tests.factories import BotDailyMetricsFactory

    bot = BotFactory(organization__timezone=tz)
    org = bot.organization
    local = datetime(2026, 11, 10, tzinfo=org.tz)  # midnight, org time

    def utc_hour(at):  # rollups are kept per whole UTC hour
        return at.astimezone(UTC).replace(minute=0)

    start, end = (
        utc_hour(local - 6 * H),
        utc_hour(local + timedelta(days=2) + 5 * H),
    )  # 2 days + 11 h
    hours = [start + i * H for i in range(int((end - start) / H))]
    for hour in hours:  # every hour answered in 100 ms ...
        rollup(bot, hour.astimezone(UTC), times=[100])
    # ... but the daily histograms say 5,000 ms: where they are read, the p95 shows it
    for day in (date(2026, 11, 10), date(2026, 11, 11)):
        BotDailyMetricsFactory(bot=bot, date=day, response_hist=sketch.histogram_of([5000] * 24))

    summary = bot_period_summary(org=org, bots=[bot], start=start, end=end)
    if daily_used:  # 48 of the 59 responses in the range are from the daily histograms
        assert close(summary.p50_ms, 5000) and close(summary.p95_ms, 5000)
    else:  # days that split UTC hours are not used: hourly only
        assert close(summary.p50_ms, 100) and close(summary.p95_ms, 100)

    # A day marked for rebuilding (late data) is read from its hours again.
    RollupDirtyDay.objects.create(organization=org, date=date(2026, 11, 10))
    RollupDirtyDay.objects.create(organization=org, date=date(2026, 11, 11))
    summary = bot_period_summary(org=org, bots=[bot], start=start, end=end)
    assert close(summary.p95_ms, 100)


def test_only_days_inside_one_bucket_come_from_daily_histograms(db):
    from analytics.selectors import daily_hist_days

    org = BotFactory(organization__timezone="Europe/Berlin").organization
    first = datetime(2026, 11, 9, 23, tzinfo=UTC)  # 10 Nov, 00:00 in Berlin
    hours = [first + i * H for i in range(24 * 2 + 5)]
    one_bucket_a_day = {h: (h - first) // timedelta(days=1) for h in hours}
    assert daily_hist_days(org, one_bucket_a_day, hours) == {
        date(2026, 11, 10): 0,
        date(2026, 11, 11): 1,
    }
    three_hour_buckets = {h: (h - first) // (3 * H) for h in hours}
    assert daily_hist_days(org, three_hour_buckets, hours) == {}
    assert daily_hist_days(org, one_bucket_a_day, hours[1:]) == {date(2026, 11, 11): 1}
