"""manage.py backfill: every rollup of a range, resumable, and in parallel through real workers."""

from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from analytics.models import (
    BotDailyMetrics,
    BotHourlyRollup,
    ConversationMetrics,
    Message,
    OrgHourlyUsage,
    RollupBackfill,
)
from analytics.services import backfill as backfill_service
from analytics.services.backfill import backfill_units
from tests.celery_worker import celery_worker
from tests.factories import BotFactory, ConversationFactory, MessageFactory, OrganizationFactory

SINCE, UNTIL = date(2026, 10, 24), date(2026, 10, 26)  # Berlin leaves DST on the 25th (25 h)


def seed(org):
    bots = [BotFactory(organization=org, slug=s) for s in ("a", "b")]
    start = datetime(2026, 10, 23, 22, tzinfo=UTC)  # 00:00 on the 24th in Berlin
    for i in range(36):
        at = start + timedelta(hours=2 * i, minutes=7)
        conv = ConversationFactory(
            bot=bots[i % 2],
            started_at=at,
            ended_at=at + timedelta(minutes=5),
            status="resolved",
            customer=f"c{i % 5}",
        )
        MessageFactory(conversation=conv, direction="inbound", created_at=at, response_time_ms=None)
        MessageFactory(
            conversation=conv, created_at=at + timedelta(seconds=30), response_time_ms=100 + 10 * i
        )
    return bots


def run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(
        "backfill",
        "--org",
        "acme",
        "--since",
        str(SINCE),
        "--until",
        str(UNTIL),
        "--no-progress",
        *args,
        stdout=out,
        **kwargs,
    )
    return out.getvalue()


def totals(org):
    hourly = BotHourlyRollup.objects.for_org(org)
    return {
        "hours": OrgHourlyUsage.objects.for_org(org).count(),
        "messages": sum(r.messages_in + r.messages_out for r in hourly),
        "days": sorted(BotDailyMetrics.objects.for_org(org).values_list("date", "bot__slug")),
        "conversations": ConversationMetrics.objects.for_org(org).count(),
    }


EXPECTED = {
    "hours": 36,
    "messages": 72,
    "days": [(date(2026, 10, d), s) for d in (24, 25, 26) for s in ("a", "b")],
    "conversations": 36,
}


def test_the_units_cover_the_range_in_the_org_time_zone(db):
    org = OrganizationFactory(timezone="Europe/Berlin")
    units = backfill_units(org=org, since=SINCE, until=UNTIL)
    hours = [u for u in units if u.startswith("h:")]
    assert len(hours) == 24 + 25 + 24
    assert hours[0] == "h:2026-10-23T22:00:00+00:00"
    assert [u for u in units if u[0] != "h"] == [
        "d:2026-10-24",
        "d:2026-10-25",
        "d:2026-10-26",
        "c:2026-10-24",
        "c:2026-10-25",
        "c:2026-10-26",
    ]
    # only complete hours and days
    now = datetime(2026, 10, 25, 12, 30, tzinfo=UTC)
    partial = backfill_units(org=org, since=SINCE, until=UNTIL, now=now)
    assert "d:2026-10-25" not in partial and "c:2026-10-25" in partial
    assert partial[len([u for u in partial if u[0] == "h"]) - 1] == "h:2026-10-25T11:00:00+00:00"


def test_units_are_whole_utc_hours_in_half_hour_time_zones(db):
    org = OrganizationFactory(timezone="Asia/Kolkata")  # days start at 18:30 UTC
    hours = [u for u in backfill_units(org=org, since=SINCE, until=SINCE) if u[0] == "h"]
    assert (hours[0], hours[-1]) == ("h:2026-10-23T18:00:00+00:00", "h:2026-10-24T18:00:00+00:00")
    assert len(hours) == 25


def test_it_builds_every_rollup_of_the_range(db):
    org = OrganizationFactory(slug="acme", timezone="Europe/Berlin")
    seed(org)
    out = run()
    assert "acme: 79 units (79 built now)" in out
    assert totals(org) == EXPECTED
    assert Message.objects.for_org(org).count() == 72
    assert RollupBackfill.objects.for_org(org).get().finished_at is not None


def test_an_interrupted_run_resumes_where_it_stopped(db, monkeypatch):
    org = OrganizationFactory(slug="acme", timezone="Europe/Berlin")
    seed(org)
    real = backfill_service.backfill_run_unit
    built = []

    def failing(**kwargs):
        if len(built) == 10:
            raise KeyboardInterrupt  # Ctrl-C in the middle
        built.append(kwargs["unit"])
        real(**kwargs)

    monkeypatch.setattr("analytics.management.commands.backfill.backfill_run_unit", failing)
    with pytest.raises(KeyboardInterrupt):
        run()
    built.clear()
    monkeypatch.setattr("analytics.management.commands.backfill.backfill_run_unit", real)
    out = run()
    assert "10 of 79 units already done" in out
    assert "79 units (69 built now)" in out
    assert totals(org) == EXPECTED
    # a finished run is not resumed: the next one starts afresh
    assert "(79 built now)" in run()


def test_bad_arguments_are_refused(db):
    OrganizationFactory(slug="acme")
    with pytest.raises(CommandError, match="No organization"):
        call_command("backfill", "--org", "nope", "--since", "2026-10-01")
    with pytest.raises(CommandError, match="not a date"):
        call_command("backfill", "--org", "acme", "--since", "October")
    with pytest.raises(CommandError, match="before"):
        call_command("backfill", "--org", "acme", "--since", "2026-10-02", "--until", "2026-10-01")


@pytest.mark.django_db(transaction=True)
def test_via_celery_the_workers_build_the_same_rollups():
    org = OrganizationFactory(slug="acme", timezone="Europe/Berlin")
    seed(org)
    with celery_worker():
        out = run("--via-celery", "--stall-timeout", "60")
    assert "79 built now" in out
    assert totals(org) == EXPECTED


def test_seed_demo_builds_the_rollups_of_its_history(db):
    from django.utils import timezone

    from analytics.models import Organization, RollupDirtyHour
    from analytics.timeutil import floor_hour

    call_command("seed_demo", "--days", "1", "--no-progress", stdout=StringIO())
    acme = Organization.objects.get(slug="acme")
    seeded = Message.objects.for_org(acme).filter(created_at__lt=floor_hour(timezone.now()))
    hourly = BotHourlyRollup.objects.for_org(acme)
    assert sum(r.messages_in + r.messages_out for r in hourly) == seeded.count() > 0
    assert BotDailyMetrics.objects.for_org(acme).exists()
    # the hour in progress is left to the hourly run: not rolled up, and marked dirty if anything
    # fell in it yet (a few minutes past the hour, at night in the org's zone, maybe nothing did)
    current = floor_hour(timezone.now())
    dirty = set(RollupDirtyHour.objects.for_org(acme).values_list("hour", flat=True))
    assert dirty <= {current}
    assert not hourly.filter(hour__gte=current).exists()
