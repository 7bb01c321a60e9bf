"""Sign-in, org landing and the org page's figures."""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from analytics.models import Role
from analytics.services.live import live_rebuild
from tests.factories import (
    ActivityFactory,
    BotFactory,
    ConversationFactory,
    MembershipFactory,
    MessageFactory,
)


def test_it_signs_in_and_lands_on_the_users_only_org(client, alice):
    response = client.post(
        reverse("login"), {"username": "alice", "password": "pw-botflow-123"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/o/acme/"
    assert "<h1>Acme</h1>" in response.content.decode()


def test_it_rejects_a_wrong_password_with_a_message(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_it_offers_an_org_picker_to_members_of_several_orgs(client, alice, other_org):
    MembershipFactory(organization=other_org, user=alice, role=Role.ANALYST)
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert 'href="/o/acme/"' in page and 'href="/o/globex/"' in page


def test_it_tells_a_user_without_an_org_what_to_do(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="lonely"))
    page = client.get("/").content.decode()
    assert "You are not a member of any organization yet." in page


def test_the_org_page_shows_todays_counts_per_bot(client, bob, org, bot):
    now = timezone.now()
    conversation = ConversationFactory(bot=bot, started_at=now)
    for direction, outcome, rt in [
        ("inbound", "", None),
        ("outbound", "success", 600),
        ("outbound", "failed", 1000),
        ("inbound", "", None),
        ("outbound", "success", 800),
    ]:
        MessageFactory(
            conversation=conversation,
            direction=direction,
            outcome=outcome,
            response_time_ms=rt,
            created_at=now,
        )
    old = ConversationFactory(bot=bot, started_at=now - timedelta(days=2))
    MessageFactory(conversation=old, created_at=now - timedelta(days=2))  # not today
    employee = BotFactory(
        organization=org, name="Luna", kind="ai_employee", persona="Customer Success"
    )
    ActivityFactory(bot=employee, value=150)
    ActivityFactory(bot=employee, value=None, kind="call")
    # Rows written behind ingestion's back: rebuild the live minute counters the page reads.
    live_rebuild(org=org)

    client.force_login(bob)
    response = client.get("/o/acme/")
    rows = {row.bot.name: row for row in response.context["rows"]}
    support = rows["Support Assistant"]
    assert (support.conversations, support.messages_in, support.messages_out) == (1, 2, 3)
    assert support.avg_response_ms == pytest.approx(800)
    assert support.success_rate == pytest.approx(200 / 3)
    assert rows["Luna"].activities == 2 and rows["Luna"].revenue == 150
    page = response.content.decode()
    assert (
        'id="metric-messages-today"><span class="label">Messages today</span><span class="value">5<'
        in page
    )
    assert "$150.00" in page
    assert "800 ms" in page and "66.7%" in page
    assert "Customer Success" in page


def test_the_org_page_uses_the_orgs_time_zone_for_today(client, bob, org, bot):
    org.timezone = "Pacific/Kiritimati"  # UTC+14: "today" there started before UTC midnight
    org.save()
    client.force_login(bob)
    response = client.get("/o/acme/")
    start = response.context["day_start"]
    assert start.utcoffset() == timedelta(hours=14)
    assert start.hour == 0


def test_the_org_page_escapes_untrusted_names(client, bob, org):
    BotFactory(organization=org, name="<script>alert(1)</script>", persona="<b>x</b>")
    client.force_login(bob)
    page = client.get("/o/acme/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_org_page_has_an_empty_state(client, bob):
    client.force_login(bob)
    assert "No bots yet." in client.get("/o/acme/").content.decode()


def test_healthz_reports_database_and_redis(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["database"], body["redis"], body["broker"]) == ("ok", "ok", "ok")
    # No pulse nor worker ran in this test: reported as unknown, the site still serves (200).
    assert body["status"] == "degraded" and body["pulse"]["status"] == "unknown"


def test_the_org_page_shows_live_cards_from_redis(client, bob, org, bot):
    from analytics.services.ingest import events_ingest

    events_ingest(
        org=org,
        events=[
            {
                "id": str(uuid.uuid4()),
                "type": "message",
                "bot": "support-bot",
                "conversation": "c",
                "direction": "outbound",
                "text": "hi",
                "response_time_ms": 1234,
                "outcome": "success",
            }
        ],
    )
    client.force_login(bob)
    page = client.get("/o/acme/").content.decode()
    assert 'ws-connect="/ws/o/acme/live/"' in page
    assert 'id="metric-avg-response"' in page and "1,234 ms" in page
    polled = client.get("/o/acme/live/metrics").content.decode()
    assert 'id="live-metrics" hx-swap-oob="true" data-as-of=' in polled and "1,234 ms" in polled
    assert 'id="live-feed" hx-swap-oob="true"' in polled  # and the rest out of band
    assert 'id="ai-employees" hx-swap-oob="true"' in polled


def test_without_redis_the_org_page_still_renders(client, bob, org, bot, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    client.force_login(bob)
    response = client.get("/o/acme/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="metric-active-now"' in page and "Support Assistant" in page


def test_the_campaign_panel_shows_todays_calls_outcomes_and_queue(client, bob, org, bot):
    from analytics.services.ingest import events_ingest
    from tests.factories import CampaignFactory

    CampaignFactory(organization=org, slug="winter", name="Winter Renewals", bot=bot)
    events = []
    for i, outcome in enumerate(["answered", "converted", "busy", "no_answer"]):
        conv = f"call-{i}"
        events += [
            {
                "id": str(uuid.uuid4()),
                "type": "conversation.started",
                "bot": "support-bot",
                "conversation": conv,
                "campaign": "winter",
            },
            {
                "id": str(uuid.uuid4()),
                "type": "conversation.ended",
                "bot": "support-bot",
                "conversation": conv,
                "status": "resolved",
                "call_outcome": outcome,
            },
        ]
    events.append(
        {
            "id": str(uuid.uuid4()),
            "type": "conversation.started",
            "bot": "support-bot",
            "conversation": "call-live",
            "campaign": "winter",
        }
    )
    events.append(
        {
            "id": str(uuid.uuid4()),
            "type": "gauge",
            "bot": "support-bot",
            "name": "queue_depth",
            "value": 87,
            "campaign": "winter",
        }
    )
    assert events_ingest(org=org, events=events).accepted == len(events)
    client.force_login(bob)
    response = client.get("/o/acme/")
    [campaign] = response.context["campaigns"]
    assert (campaign.attempts, campaign.active_calls, campaign.queue_depth) == (5, 1, 87.0)
    assert campaign.answer_rate == 50.0 and campaign.conversion_rate == 25.0
    page = response.content.decode()
    assert "Winter Renewals" in page and "Opted out" in page
    health = response.context["health"]
    assert (health.answer_rate, health.active_campaigns) == (50.0, 1)
    assert 'id="system-health"' in page
    assert "<dt>CPU</dt>" not in page and "<dt>Memory</dt>" not in page  # the host's, not ours


def test_the_live_part_can_be_narrowed_to_a_bot_or_a_campaign(client, bob, org, bot, other_org):
    from analytics.services.ingest import events_ingest
    from tests.factories import CampaignFactory

    sales = BotFactory(organization=org, slug="sales-bot", name="Sales")
    CampaignFactory(organization=org, slug="spring", name="Spring calls", bot=sales)
    BotFactory(organization=other_org, slug="claims-bot")

    def event(bot_slug, conversation, **fields):
        return {"id": str(uuid.uuid4()), "bot": bot_slug, "conversation": conversation, **fields}

    events_ingest(
        org=org,
        events=[
            event("support-bot", "w1", type="message", direction="inbound", text="support q"),
            event(
                "sales-bot",
                "s1",
                type="conversation.started",
                campaign="spring",
                channel="voice",
                customer="Ana",
            ),
            event("sales-bot", "s1", type="message", direction="inbound", text="sales q"),
            event("sales-bot", "s2", type="message", direction="inbound", text="no campaign"),
        ],
    )
    client.force_login(bob)
    whole = client.get("/o/acme/").content.decode()
    assert 'data-scope=""' in whole and "support q" in whole and "sales q" in whole
    assert '<option value="bot:sales-bot">Sales</option>' in whole
    assert '<option value="campaign:spring">Spring calls</option>' in whole
    assert "· Sales · Voice</span>" in whole  # the feed row names the bot and the channel

    page = client.get("/o/acme/?bot=sales-bot").content.decode()
    assert 'data-scope="bot:sales-bot"' in page
    assert '<option value="bot:sales-bot" selected>' in page
    assert "sales q" in page and "no campaign" in page and "support q" not in page

    polled = client.get("/o/acme/live/metrics?scope=campaign:spring").content.decode()
    assert 'data-scope="campaign:spring"' in polled
    assert "sales q" in polled and "no campaign" not in polled and "support q" not in polled
    assert "Spring calls" in polled

    refused = client.get("/o/acme/?bot=claims-bot").content.decode()
    assert "No bot &#x27;claims-bot&#x27; in Acme; showing everything." in refused
    assert 'data-scope=""' in refused and "support q" in refused


def test_a_role_without_the_permission_gets_the_sites_403_page(client, bob, org):
    client.force_login(bob)
    response = client.get(reverse("dashboard:conversations", args=[org.slug]))
    assert response.status_code == 403
    html = response.content.decode()
    assert "Your role (Viewer) does not allow this." in html
    assert "Ask an owner or admin of Acme for a role that does." in html
    assert 'class="topbar"' in html and 'href="/o/acme/"' in html  # the site's frame and nav
