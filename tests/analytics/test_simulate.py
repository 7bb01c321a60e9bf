"""The traffic simulator produces valid, realistic events and sends them over real HTTP."""

import random
import time

from django.core.management import call_command

from analytics.management.commands.simulate import Simulator
from analytics.models import Activity, ApiKey, Conversation, Gauge, Message
from analytics.services.demo import ACME, demo_accounts_ensure
from analytics.services.ingest import events_ingest


def test_every_simulated_event_is_accepted(db):
    org, bots, campaigns = demo_accounts_ensure(spec=ACME)
    sim = Simulator(list(bots.values()), list(campaigns.values()), rate=200, rng=random.Random(3))
    events, t = [], time.time() - 120
    for step in range(240):  # two minutes of traffic in half-second ticks
        events += sim.tick(t + step * 0.5, 0.5)
    kinds = {e["type"] for e in events}
    assert kinds == {"conversation.started", "message", "conversation.ended", "activity", "gauge"}
    result = events_ingest(org=org, events=events)
    assert result.rejected == [] and result.accepted == len(events)
    assert (
        Message.objects.for_org(org).filter(direction="outbound", response_time_ms__gt=0).exists()
    )
    assert (
        Conversation.objects.for_org(org)
        .filter(campaign__isnull=False)
        .exclude(call_outcome="")
        .exists()
    )
    assert Activity.objects.for_org(org).exists() and Gauge.objects.for_org(org).exists()


def test_the_command_sends_traffic_through_the_http_api(live_server, transactional_db, capsys):
    org, _, _ = demo_accounts_ensure(spec=ACME)
    call_command(
        "simulate",
        "--org",
        "acme",
        "--rate",
        "100",
        "--duration",
        "3",
        "--url",
        live_server.url,
        "--seed",
        "1",
    )
    out = capsys.readouterr().out
    assert "done: sent" in out
    assert Conversation.objects.for_org(org).count() > 0
    assert Message.objects.for_org(org).count() > 0
    assert (
        not ApiKey.objects.for_org(org).filter(revoked_at__isnull=True).exists()
    )  # temporary key revoked
