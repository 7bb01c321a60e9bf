"""The insights and alerts pages and the alerts API, as a member, an admin and an outsider."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from analytics.models import AlertEvent, AlertRule, BotHourlyRollup
from analytics.services.api_keys import api_key_issue_secret
from analytics.services.insights import insights_refresh
from tests import factories as f
from tests.analytics.services.test_insights import seasonal

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(org, bot):
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    values = seasonal(21 * 24, seed=1)
    values[-3] = values[-3] * 5 + 80  # a spike three hours ago
    BotHourlyRollup.objects.bulk_create(
        BotHourlyRollup(
            organization=org,
            bot=bot,
            hour=now - timedelta(hours=21 * 24 - i),
            messages_in=int(v),
            bookings=int(v // 20),
            revenue=v * 2,
        )
        for i, v in enumerate(values)
    )
    insights_refresh(org_id=org.pk, now=now)


def test_it_shows_forecasts_anomalies_and_drill_down_links(client, dave, org, bot, history):
    client.force_login(dave)
    response = client.get(reverse("dashboard:insights", args=[org.slug]))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="forecast-messages-figure"' in html and "backtest error (MAPE" in html
    assert "95%:" in html and "vs the last 7 days" in html
    found = {(a["metric"], a["bot_slug"]) for a in response.context["anomalies"]}
    assert found == {("volume", ""), ("volume", "support-bot")}  # the org's and the bot's
    assert 'href="/o/acme/conversations/?bot=support-bot&amp;start=' in html
    # a viewer sees the same insights without links into the explorer, which is an analyst's
    viewer = f.MembershipFactory(organization=org, role="viewer").user
    client.force_login(viewer)
    as_viewer = client.get(reverse("dashboard:insights", args=[org.slug])).content.decode()
    assert 'id="forecast-messages-figure"' in as_viewer
    assert "/o/acme/conversations/" not in as_viewer
    client.force_login(dave)
    # the bot's own page
    response = client.get(reverse("dashboard:insights", args=[org.slug]) + "?bot=support-bot")
    assert response.context["bot"] == bot and response.context["forecasts"]


def test_it_says_not_enough_data_instead_of_a_made_up_line(client, bob, org, bot):
    f.BotHourlyRollupFactory(bot=bot, hour=timezone.now() - timedelta(days=3), messages_in=9)
    insights_refresh(org_id=org.pk)
    client.force_login(bob)
    html = client.get(reverse("dashboard:insights", args=[org.slug])).content.decode()
    assert "Not enough data yet." in html and "needs 14 days of history" in html
    assert "forecast-messages-figure" not in html


def test_a_page_without_a_report_queues_one_and_says_so(client, bob, org):
    client.force_login(bob)
    html = client.get(reverse("dashboard:insights", args=[org.slug])).content.decode()
    assert "Insights are being computed." in html


def _rule_form(**changes):
    data = {
        "name": "Slow replies",
        "metric": "p95_response_ms",
        "comparison": "above",
        "warning_threshold": "2000",
        "critical_threshold": "5000",
        "window_minutes": "15",
        "cooldown_minutes": "30",
        "hysteresis_percent": "10",
        "email_recipients": "",
        "webhook_url": "",
        "enabled": "on",
    }
    data.update(changes)
    return data


def test_an_admin_creates_a_rule_and_bad_ones_are_refused(client, alice, org, bot, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    client.force_login(alice)
    url = reverse("dashboard:alerts", args=[org.slug])
    for bad, field in [
        ({"warning_threshold": "6000"}, "warning_threshold"),
        ({"window_minutes": "0"}, "window_minutes"),
        ({"metric": "made_up"}, "metric"),
        ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
        ({"webhook_url": "http://127.0.0.1:8000/admin/"}, "webhook_url"),
    ]:
        response = client.post(url, _rule_form(**bad))
        assert response.status_code == 400, bad
        assert field in response.context["form"].errors, bad
    assert not AlertRule.objects.exists()
    response = client.post(url, _rule_form(bot=str(bot.pk)))
    assert response.status_code == 302
    rule = AlertRule.objects.for_org(org).get()
    assert (rule.bot, rule.created_by) == (bot, alice)
    html = client.get(url).content.decode()
    assert "Slow replies" in html and "Mute" in html


def test_a_viewer_sees_rules_but_cannot_change_them(client, bob, org):
    rule = f.AlertRuleFactory(organization=org, name="Volume")
    client.force_login(bob)
    url = reverse("dashboard:alerts", args=[org.slug])
    html = client.get(url).content.decode()
    assert "Volume" in html and "New rule" not in html
    assert client.post(url, _rule_form()).status_code == 403
    action = reverse("dashboard:alert_rule_action", args=[org.slug, rule.pk])
    assert client.post(action, {"action": "delete"}).status_code == 403
    assert AlertRule.objects.filter(pk=rule.pk).exists()


def test_mute_and_acknowledge_from_the_page(client, alice, org):
    rule = f.AlertRuleFactory(organization=org)
    event = f.AlertEventFactory(rule=rule)
    client.force_login(alice)
    client.post(
        reverse("dashboard:alert_rule_action", args=[org.slug, rule.pk]), {"action": "mute:4h"}
    )
    rule.refresh_from_db()
    assert rule.muted_until > timezone.now() + timedelta(hours=3)
    client.post(reverse("dashboard:alert_event_ack", args=[org.slug, event.pk]))
    event.refresh_from_db()
    assert event.acknowledged_by == alice


def test_an_outsider_cannot_act_on_another_orgs_alerts(client, charlie, org):
    rule = f.AlertRuleFactory(organization=org)
    event = f.AlertEventFactory(rule=rule)
    client.force_login(charlie)
    for url in (
        reverse("dashboard:alert_rule_action", args=[org.slug, rule.pk]),
        reverse("dashboard:alert_event_ack", args=[org.slug, event.pk]),
        reverse("dashboard:alert_rule_action", args=["globex", rule.pk]),
        reverse("dashboard:alert_event_ack", args=["globex", event.pk]),
    ):
        assert client.post(url, {"action": "delete"}).status_code == 404, url
    assert AlertRule.objects.filter(pk=rule.pk).exists()
    assert AlertEvent.objects.get(pk=event.pk).acknowledged_at is None


# --- API -----------------------------------------------------------------------------------


def _key(org, scopes):
    key = f.ApiKeyFactory.build(organization=org, scopes=scopes)
    secret = api_key_issue_secret(key)
    key.save()
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def test_the_api_creates_lists_and_refuses_rules(client, org, other_org, bot, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    auth = _key(org, ["alerts"])
    url = reverse("api:alert-rules")
    body = {
        "name": "Errors",
        "metric": "error_rate",
        "bot": "support-bot",
        "warning_threshold": 5,
        "critical_threshold": 20,
        "window_minutes": 10,
    }
    response = client.post(url, body, content_type="application/json", **auth)
    assert response.status_code == 201, response.content
    assert response.json()["bot"] == "support-bot"
    for bad, field in [
        ({"warning_threshold": 50}, "warning_threshold"),
        ({"metric": "nope"}, "metric"),
        ({"window_minutes": 0}, "window_minutes"),
        ({"webhook_url": "file:///etc/passwd"}, "webhook_url"),
        ({"webhook_url": "http://169.254.169.254/"}, "webhook_url"),
    ]:
        response = client.post(url, {**body, **bad}, content_type="application/json", **auth)
        assert response.status_code == 400 and field in response.json(), (bad, response.content)
    assert AlertRule.objects.count() == 1
    rule = AlertRule.objects.get()
    # read-only keys read; other orgs' keys see nothing of it
    read = _key(org, ["read"])
    assert client.get(url, **read).json()[0]["name"] == "Errors"
    assert client.post(url, body, content_type="application/json", **read).status_code == 403
    other = _key(other_org, ["alerts", "read"])
    assert client.get(url, **other).json() == []
    detail = reverse("api:alert-rule", args=[rule.pk])
    assert client.get(detail, **other).status_code == 404
    assert client.delete(detail, **other).status_code == 404
    assert client.delete(detail, **auth).status_code == 204
    assert not AlertRule.objects.exists()


# --- roles: acknowledging is an analyst's; rules are an admin's ------------------------------


def test_a_viewer_cannot_acknowledge_an_alert_and_sees_no_button(client, bob, org):
    event = f.AlertEventFactory(rule=f.AlertRuleFactory(organization=org))
    client.force_login(bob)
    html = client.get(reverse("dashboard:alerts", args=[org.slug])).content.decode()
    assert "Acknowledge</button>" not in html
    response = client.post(reverse("dashboard:alert_event_ack", args=[org.slug, event.pk]))
    assert response.status_code == 403
    assert "Your role (Viewer) does not allow this." in response.content.decode()
    event.refresh_from_db()
    assert event.acknowledged_at is None


def test_an_analyst_acknowledges_but_cannot_change_rules(client, dave, org):
    rule = f.AlertRuleFactory(organization=org, name="Volume")
    event = f.AlertEventFactory(rule=rule)
    client.force_login(dave)
    url = reverse("dashboard:alerts", args=[org.slug])
    html = client.get(url).content.decode()
    assert "Acknowledge</button>" in html and "New rule" not in html and "Mute</button>" not in html
    client.post(reverse("dashboard:alert_event_ack", args=[org.slug, event.pk]))
    event.refresh_from_db()
    assert event.acknowledged_by == dave
    assert client.post(url, _rule_form()).status_code == 403
    action = reverse("dashboard:alert_rule_action", args=[org.slug, rule.pk])
    assert client.post(action, {"action": "mute:1h"}).status_code == 403
    rule.refresh_from_db()
    assert rule.muted_until is None


def test_an_admin_manages_rules_from_the_page(client, erin, org):
    rule = f.AlertRuleFactory(organization=org, name="Volume")
    client.force_login(erin)
    html = client.get(reverse("dashboard:alerts", args=[org.slug])).content.decode()
    assert "New rule" in html
    action = reverse("dashboard:alert_rule_action", args=[org.slug, rule.pk])
    assert client.post(action, {"action": "delete"}).status_code == 302
    assert not AlertRule.objects.filter(pk=rule.pk).exists()


def test_the_session_api_follows_the_role_matrix(client, bob, dave, erin, org):
    rule = f.AlertRuleFactory(organization=org, webhook_url="https://hooks.example.com/s3cret")
    event = f.AlertEventFactory(rule=rule)
    ack = f"/api/v1/alerts/events/{event.pk}/ack?org=acme"
    mute = f"/api/v1/alerts/rules/{rule.pk}/mute?org=acme"
    client.force_login(bob)
    rules = client.get("/api/v1/alerts/rules?org=acme")
    assert (
        rules.status_code == 200
        and rules.json()[0]["webhook_url"] == "https://hooks.example.com/***"
    )
    response = client.post(ack)
    assert response.status_code == 403
    assert response.json() == {"detail": "Your role (viewer) does not allow this."}
    client.force_login(dave)
    assert client.post(mute, {"minutes": 60}).status_code == 403
    assert client.post(ack).status_code == 200
    event.refresh_from_db()
    assert event.acknowledged_by == dave
    client.force_login(erin)
    assert client.get("/api/v1/alerts/rules?org=acme").json()[0]["webhook_url"].endswith("s3cret")
    assert client.post(mute, {"minutes": 60}).status_code == 200
    assert client.delete(f"/api/v1/alerts/rules/{rule.pk}?org=acme").status_code == 204
    assert client.get("/api/v1/alerts/rules?org=globex").status_code == 404


# --- webhook URLs are secrets; recipients are capped (issue 11) --------------------------------

HOOK = "https://hooks.example.com/services/T000/B111/s3cretP4th?token=abc"


def test_a_read_key_sees_a_webhook_url_masked_and_an_alerts_key_in_full(client, org):
    rule = f.AlertRuleFactory(organization=org, webhook_url=HOOK)
    for scopes, shown in (
        (["read"], "https://hooks.example.com/***"),
        (["alerts"], HOOK),
        (["read", "alerts"], HOOK),
    ):
        auth = _key(org, scopes)
        listed = client.get(reverse("api:alert-rules"), **auth)
        detail = client.get(reverse("api:alert-rule", args=[rule.pk]), **auth)
        assert listed.json()[0]["webhook_url"] == shown, scopes
        assert detail.json()["webhook_url"] == shown, scopes
        if shown != HOOK:
            assert "s3cret" not in listed.content.decode() + detail.content.decode()


def test_the_page_masks_webhook_urls_below_admin_and_the_admin_list_masks_them(
    client, alice, bob, org
):
    f.AlertNotificationFactory(
        event=f.AlertEventFactory(rule=f.AlertRuleFactory(organization=org, webhook_url=HOOK)),
        channel="webhook",
        target=HOOK,
    )
    url = reverse("dashboard:alerts", args=[org.slug])
    client.force_login(bob)  # a viewer
    page = client.get(url).content.decode()
    assert "https://hooks.example.com/***" in page and "s3cret" not in page
    analyst = f.UserFactory(username="ann")
    f.MembershipFactory(organization=org, user=analyst, role="analyst")
    client.force_login(analyst)
    assert "s3cret" not in client.get(url).content.decode()
    client.force_login(alice)  # the owner
    assert "https://hooks.example.com/services/T000" in client.get(url).content.decode()
    client.force_login(f.UserFactory(username="root", is_staff=True, is_superuser=True))
    listing = client.get("/admin/analytics/alertnotification/").content.decode()
    assert "https://hooks.example.com/***" in listing and "s3cret" not in listing


def test_a_rule_with_too_many_recipients_is_refused_on_the_page_and_the_api(
    client, alice, org, settings
):
    settings.ALERT_MAX_RECIPIENTS = 50
    many = ", ".join(f"ops{i}@example.com" for i in range(2000))
    client.force_login(alice)
    response = client.post(
        reverse("dashboard:alerts", args=[org.slug]), _rule_form(email_recipients=many)
    )
    assert response.status_code == 400
    assert response.context["form"].errors["email_recipients"] == [
        "At most 50 email addresses per rule (2000 given); use a mailing list for more."
    ]
    body = {
        "name": "Volume",
        "metric": "volume",
        "warning_threshold": 5,
        "critical_threshold": 20,
        "window_minutes": 10,
        "email_recipients": many,
    }
    response = client.post(
        reverse("api:alert-rules"), body, content_type="application/json", **_key(org, ["alerts"])
    )
    assert response.status_code == 400 and "At most 50" in response.json()["email_recipients"][0]
    assert not AlertRule.objects.exists()
    fifty = ", ".join(f"ops{i}@example.com" for i in range(50))
    response = client.post(
        reverse("api:alert-rules"),
        {**body, "email_recipients": fifty},
        content_type="application/json",
        **_key(org, ["alerts"]),
    )
    assert response.status_code == 201
