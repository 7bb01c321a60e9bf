"""The demo seeder: every bot kind, realistic shapes, and a second run changes nothing."""

import statistics

from django.core.management import call_command
from django.db.models import Count, F

from analytics.models import (
    Activity,
    Bot,
    Campaign,
    Conversation,
    Gauge,
    Membership,
    Message,
    Organization,
)
from analytics.selectors import live_snapshot


def _outbound_response_times(org):
    return sorted(
        Message.objects.for_org(org)
        .filter(direction="outbound")
        .values_list("response_time_ms", flat=True)
    )


def test_it_seeds_two_orgs_with_every_kind_of_bot_and_realistic_history(db, capsys):
    call_command("seed_demo", "--days", "3", "--no-progress")
    out = capsys.readouterr().out
    assert "Sign in as demo / demo-botflow" in out
    acme = Organization.objects.get(slug="acme")
    assert Organization.objects.filter(slug="globex").exists()
    assert Membership.objects.get(organization=acme, user__username="demo").role == "owner"
    bots = {b.slug: b for b in Bot.objects.for_org(acme)}
    assert {b.kind for b in bots.values()} == {"chatbot", "ai_employee", "voice"}
    assert {(bots[s].name, bots[s].persona) for s in ("luna", "jade", "flora")} == {
        ("Luna", "Customer Success"),
        ("Jade", "Sales Specialist"),
        ("Flora", "Operations Manager"),
    }
    assert bots["support-bot"].channel == "whatsapp" and bots["sales-bot"].channel == "web"
    assert Campaign.objects.for_org(acme).get(slug="winter-renewals").bot == bots["dialer"]

    messages = Message.objects.for_org(acme)
    assert messages.count() > 1000
    outcomes = dict(
        messages.filter(direction="outbound").values_list("outcome").annotate(n=Count("id"))
    )
    replies = sum(outcomes.values())
    assert 0.02 < outcomes["failed"] / replies < 0.09
    assert 0.02 < outcomes["fallback"] / replies < 0.09
    times = _outbound_response_times(acme)
    p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
    assert 500 < p50 < 1500 and p99 > 3 * p50  # log-normal with a heavy tail

    conversations = Conversation.objects.for_org(acme)
    statuses = set(conversations.values_list("status", flat=True))
    assert {"resolved", "unresolved", "escalated"} <= statuses
    csats = [c for c in conversations.values_list("csat", flat=True) if c is not None]
    assert set(csats) <= {1, 2, 3, 4, 5} and 3.2 < statistics.mean(csats) < 4.8
    dialed = conversations.filter(bot=bots["dialer"])
    assert {"answered", "no_answer", "converted"} <= set(
        dialed.values_list("call_outcome", flat=True)
    )
    assert all(conv.campaign_id for conv in dialed)
    assert Activity.objects.for_org(acme).filter(kind="booking", value__gt=0).exists()
    assert Gauge.objects.for_org(acme).filter(name="queue_depth").exists()
    # the live state is rebuilt from the seeded history, so the dashboard starts full
    snapshot = live_snapshot(org=acme)
    assert snapshot.messages_last_hour.value > 0 and snapshot.messages_last_hour.previous > 0
    # every row of a conversation belongs to its org and bot
    assert not messages.exclude(bot=F("conversation__bot")).exists()
    assert not Message.objects.exclude(organization=F("conversation__organization")).exists()


def test_a_second_run_does_not_duplicate_anything(db):
    call_command("seed_demo", "--days", "1", "--no-progress")
    counts = (Message.objects.count(), Conversation.objects.count(), Bot.objects.count())
    call_command("seed_demo", "--days", "1", "--no-progress")
    assert (Message.objects.count(), Conversation.objects.count(), Bot.objects.count()) == counts


def test_reset_rebuilds_history_instead_of_adding_to_it(db):
    call_command("seed_demo", "--days", "1", "--no-progress", "--seed", "1")
    acme = Organization.objects.get(slug="acme")
    first = Message.objects.for_org(acme).count()
    call_command("seed_demo", "--days", "1", "--no-progress", "--seed", "1", "--reset")
    assert 0.7 * first < Message.objects.for_org(acme).count() < 1.3 * first
