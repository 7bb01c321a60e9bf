"""The response-time and volume charts, their period switch, and the campaign outcome donut, as
the page and its fragment view deliver them (the JSON the browser draws, the tables beside it)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import sketch
from analytics.services.ingest import events_ingest
from tests.factories import BotHourlyRollupFactory, CampaignFactory


def figure(page: str, script_id: str) -> dict:
    match = re.search(
        rf'<script id="{script_id}" type="application/json">(.*?)</script>', page, re.S
    )
    assert match, f"no {script_id} in the page"
    return json.loads(match.group(1))


def trace(fig: dict, name: str) -> dict:
    return next(t for t in fig["data"] if t["name"] == name)


def at(fig: dict, name: str, x: str):
    t = trace(fig, name)
    return t["y"][t["x"].index(x)]


def x_of(hour) -> str:
    return timezone.localtime(hour, timezone.get_fixed_timezone(0)).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def traffic(org, bot):
    """Two hours ago rolled up (400, 600, 2000 ms; 5 in), and two live replies now (100, 300 ms)."""
    now = timezone.now()
    current = now.replace(minute=0, second=0, microsecond=0)
    rolled = current - timedelta(hours=2)
    BotHourlyRollupFactory(
        bot=bot,
        hour=rolled,
        messages_in=5,
        messages_out=3,
        response_count=3,
        response_sum_ms=3000,
        response_hist=sketch.histogram_of([400, 600, 2000]),
    )
    events = [
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": bot.slug,
            "conversation": "c1",
            "direction": "outbound",
            "response_time_ms": rt,
            "outcome": "success",
        }
        for rt in (100, 300)
    ]
    assert events_ingest(org=org, events=events).accepted == 2
    return {"rolled": rolled, "current": current}


def test_the_page_embeds_the_response_and_volume_figures(client, bob, traffic):
    client.force_login(bob)
    page = client.get("/o/acme/").content.decode()
    response = figure(page, "chart-response-figure")
    volume = figure(page, "chart-volume-figure")
    assert len(trace(response, "p95")["x"]) == 24  # the default period: 24 hourly buckets
    rolled, current = x_of(traffic["rolled"]), x_of(traffic["current"])
    assert at(response, "Average", rolled) == 1000
    assert at(response, "p50", rolled) == pytest.approx(600, rel=0.02)
    assert at(response, "p95", rolled) == pytest.approx(600, rel=0.02)  # lower rank of 3 values
    assert at(response, "Average", current) == 200
    assert at(response, "p50", current) == pytest.approx(100, rel=0.02)
    hour_between = x_of(traffic["current"] - timedelta(hours=1))
    assert at(response, "p95", hour_between) is None  # no data: a gap, not a zero
    assert (at(volume, "Inbound", rolled), at(volume, "Outbound", rolled)) == (5, 3)
    assert (at(volume, "Inbound", current), at(volume, "Outbound", current)) == (0, 2)
    # The chart nodes the browser draws into, and a table alternative for each.
    assert 'id="chart-response" class="chart" data-figure="chart-response-figure"' in page
    assert 'id="chart-volume" class="chart" data-figure="chart-volume-figure"' in page
    assert 'id="chart-response-table"' in page and 'id="chart-volume-table"' in page
    assert 'id="period-24h" class="period-button" aria-pressed="true"' in page
    assert "every 60s" in page


def test_the_period_switch_returns_the_7d_and_30d_figures(client, bob, traffic):
    client.force_login(bob)
    week = client.get("/o/acme/charts/period?period=7d").content.decode()
    response, volume = figure(week, "chart-response-figure"), figure(week, "chart-volume-figure")
    assert len(trace(response, "Average")["x"]) == 56  # 3-hour buckets
    assert 'id="period-7d" class="period-button" aria-pressed="true"' in week
    assert (
        'id="period-switch" class="period-switch" role="group" aria-label="Period" hx-swap-oob="true"'
        in week
    )
    assert 'id="chart-response-data" hx-swap-oob="true"' in week
    assert "Last 7 days" in week
    assert sum(trace(volume, "Inbound")["y"]) == 5 and sum(trace(volume, "Outbound")["y"]) == 5
    month = client.get("/o/acme/charts/period?period=30d").content.decode()
    response = figure(month, "chart-response-figure")
    assert len(trace(response, "Average")["x"]) == 30
    today = trace(response, "Average")["x"][-1]
    assert today.endswith("T00:00")  # days start at midnight in the org's time zone
    if traffic["rolled"].date() == traffic["current"].date():
        assert trace(response, "Average")["y"][-1] == round((3000 + 400) / 5)
    # The table alternative holds the same figures as the chart.
    table = month[month.index('id="chart-volume-table"') :]
    table = table[: table.index("</table>")]
    cells = re.findall(r'<td class="num">([\d,]+)</td><td class="num">([\d,]+)</td>', table)
    assert len(cells) == 30
    assert sum(int(i) for i, _ in cells) == 5 and sum(int(o) for _, o in cells) == 5


def test_an_unknown_period_gets_the_default_not_an_error(client, bob, traffic):
    client.force_login(bob)
    response = client.get("/o/acme/charts/period?period=<script>")
    assert response.status_code == 200
    page = response.content.decode()
    assert len(trace(figure(page, "chart-response-figure"), "p95")["x"]) == 24
    assert "<script>" not in page.replace('<script id="chart', "")


def test_the_fragment_follows_the_pages_scope(client, bob, org, traffic):
    from tests.factories import BotFactory

    BotFactory(organization=org, slug="quiet", name="Quiet Bot")
    client.force_login(bob)
    page = client.get("/o/acme/charts/period?period=24h&scope=bot:quiet").content.decode()
    assert sum(trace(figure(page, "chart-volume-figure"), "Outbound")["y"]) == 0
    assert "Quiet Bot" in page
    page = client.get("/o/acme/charts/period?period=24h&scope=bot:support-bot").content.decode()
    assert sum(trace(figure(page, "chart-volume-figure"), "Outbound")["y"]) == 5


def test_an_outsider_gets_404_from_the_fragment(client, charlie, traffic):
    client.force_login(charlie)
    assert client.get("/o/acme/charts/period?period=7d").status_code == 404


def test_without_redis_the_fragment_shows_the_rolled_up_hours(client, bob, traffic, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    client.force_login(bob)
    response = client.get("/o/acme/charts/period?period=24h")
    assert response.status_code == 200
    page = response.content.decode()
    volume = figure(page, "chart-volume-figure")
    assert at(volume, "Inbound", x_of(traffic["rolled"])) == 5
    assert "missing while live data is unavailable" in page


def test_the_campaign_panel_draws_an_outcome_donut_with_a_text_alternative(client, bob, org, bot):
    CampaignFactory(organization=org, slug="winter", name="Winter Renewals", bot=bot)
    events = []
    for i, outcome in enumerate(["answered", "answered", "converted", "busy", "opt_out"]):
        events += [
            {
                "id": str(uuid.uuid4()),
                "type": "conversation.started",
                "bot": bot.slug,
                "conversation": f"call-{i}",
                "campaign": "winter",
            },
            {
                "id": str(uuid.uuid4()),
                "type": "conversation.ended",
                "bot": bot.slug,
                "conversation": f"call-{i}",
                "status": "resolved",
                "call_outcome": outcome,
            },
        ]
    assert events_ingest(org=org, events=events).accepted == len(events)
    client.force_login(bob)
    page = client.get("/o/acme/").content.decode()
    pie = figure(page, "campaign-pie-winter-figure")["data"][0]
    assert pie["type"] == "pie"
    assert dict(zip(pie["labels"], pie["values"], strict=True)) == {
        "Answered": 2,
        "Converted": 1,
        "Busy": 1,
        "Opted out": 1,
    }
    assert pie["marker"]["colors"][0] == "var(--o-answered)"  # the same colour as its bar
    assert 'id="campaign-pie-winter" class="pie" hx-preserve="true"' in page
    assert (
        "Call outcomes today, Winter Renewals: Answered 2, Converted 1, Busy 1, Opted out 1" in page
    )
    # The socket and the polling fallback push the same panel (and the donut's new JSON).
    polled = client.get("/o/acme/live/metrics").content.decode()
    assert figure(polled, "campaign-pie-winter-figure")["data"][0]["values"] == [2, 1, 1, 1]


def test_a_campaign_without_finished_calls_says_so_instead_of_an_empty_donut(client, bob, org, bot):
    CampaignFactory(organization=org, slug="spring", name="Spring", bot=bot)
    client.force_login(bob)
    page = client.get("/o/acme/").content.decode()
    assert "No finished calls today" in page and "campaign-pie-spring-figure" not in page
