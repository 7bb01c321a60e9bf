"""The response-time and volume charts in the browser: the period switch redraws the same chart
nodes in place and changes the tables; the campaign donut; screenshots to look at."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from analytics import sketch
from analytics.models import Bot
from analytics.services.ingest import events_ingest
from tests.e2e.conftest import wait_for_js
from tests.e2e.test_accessibility import serious
from tests.factories import BotFactory, BotHourlyRollupFactory, CampaignFactory


def rollup(bot, hour, inbound, times):
    BotHourlyRollupFactory(
        bot=bot,
        hour=hour,
        messages_in=inbound,
        messages_out=len(times),
        successes=len(times),
        response_count=len(times),
        response_sum_ms=sum(times),
        response_hist=sketch.histogram_of(times),
    )


@pytest.fixture
def month(org, bot):
    """A month of rolled-up hours (a quiet day left out), live replies now, and a campaign."""
    current = timezone.now().replace(minute=0, second=0, microsecond=0)
    for hours_ago in range(1, 30 * 24, 5):
        if 24 * 11 <= hours_ago < 24 * 14:
            continue  # quiet days: gaps in the lines, empty bars
        load = 1 + (hours_ago * 7) % 11
        times = [400 + 40 * load + 90 * i for i in range(load)]
        rollup(bot, current - timedelta(hours=hours_ago), 2 * load, times)
    employee = BotFactory(organization=org, slug="luna", name="Luna", kind=Bot.Kind.AI_EMPLOYEE)
    CampaignFactory(organization=org, slug="winter", name="Winter Renewals", bot=employee)
    events = [
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": bot.slug,
            "conversation": "live-1",
            "direction": "outbound",
            "response_time_ms": rt,
            "outcome": "success",
        }
        for rt in (350, 500, 900)
    ]
    for i, outcome in enumerate(["answered"] * 5 + ["converted"] * 2 + ["busy", "no_answer"]):
        events += [
            {
                "id": str(uuid.uuid4()),
                "type": "conversation.started",
                "bot": "luna",
                "conversation": f"call-{i}",
                "campaign": "winter",
            },
            {
                "id": str(uuid.uuid4()),
                "type": "conversation.ended",
                "bot": "luna",
                "conversation": f"call-{i}",
                "status": "resolved",
                "call_outcome": outcome,
            },
        ]
    assert events_ingest(org=org, events=events).accepted == len(events)
    return org


def drawn_points(page: Page, chart_id: str) -> int:
    """How many x values the chart's first trace holds, as Plotly drew it."""
    return page.evaluate(f"document.getElementById('{chart_id}').data[0].x.length")


def test_7d_redraws_the_charts_in_place_and_changes_the_tables(
    sign_in, page: Page, screenshot, alice, month
):
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in("alice")
    page.wait_for_url("**/o/acme/")
    expect(page.locator("#chart-response .main-svg").first).to_be_attached()
    expect(page.locator("#chart-volume .main-svg").first).to_be_attached()
    assert drawn_points(page, "chart-response") == 24
    # Mark the chart nodes: a swap that replaced them would lose the mark.
    page.evaluate(
        "for (const id of ['chart-response', 'chart-volume']) document.getElementById(id).__mark = id"
    )
    volume_rows = page.locator("#chart-volume-table tbody tr")
    expect(volume_rows).to_have_count(24)
    page.locator("#chart-volume-details summary").click()  # open the table before switching

    page.get_by_role("button", name="7d").click()

    expect(page.locator("#period-7d")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#period-24h")).to_have_attribute("aria-pressed", "false")
    expect(volume_rows).to_have_count(56)
    expect(page.locator("#chart-period-note")).to_contain_text("Last 7 days")
    wait_for_js(page, "document.getElementById('chart-response').data[0].x.length === 56")
    assert drawn_points(page, "chart-volume") == 56
    assert page.evaluate("document.getElementById('chart-response').__mark") == "chart-response"
    assert page.evaluate("document.getElementById('chart-volume').__mark") == "chart-volume"
    expect(page.locator("#chart-volume-details")).to_have_attribute("open", "")  # still open
    expect(page.locator("#period-7d")).to_be_focused()  # focus stays on the switch
    page.locator("#period-charts").screenshot(
        path=screenshot("charts-7d").with_name("charts-7d-section.png")
    )

    page.get_by_role("button", name="30d").click()
    expect(volume_rows).to_have_count(30)
    wait_for_js(page, "document.getElementById('chart-volume').data[0].x.length === 30")
    assert page.evaluate("document.getElementById('chart-volume').__mark") == "chart-volume"
    # The day without traffic is a gap in the lines, not a zero.
    gaps = page.evaluate(
        "document.getElementById('chart-response').data[2].y.filter(v => v === null).length"
    )
    assert gaps >= 1
    page.locator("#chart-response-details summary").click()
    assert serious(page) == []  # axe, with both tables open and 30d pressed


def test_the_campaign_donut_is_drawn_beside_the_bars(sign_in, page: Page, alice, month):
    sign_in("alice")
    page.wait_for_url("**/o/acme/")
    expect(page.locator("#campaign-pie-winter .main-svg").first).to_be_attached()
    values = page.evaluate("document.getElementById('campaign-pie-winter').data[0].values")
    assert values == [5, 2, 1, 1]
    expect(page.locator("#campaign-pie-winter-label")).to_have_text(
        "Call outcomes today, Winter Renewals: Answered 5, Converted 2, Busy 1, No answer 1"
    )


@pytest.mark.parametrize(
    ("name", "width", "scheme"),
    [
        ("charts-desktop-1280", 1280, "light"),
        ("charts-desktop-1280-dark", 1280, "dark"),
        ("charts-mobile-390", 390, "light"),
    ],
)
def test_screenshots_of_the_charts(
    sign_in, page: Page, screenshot, alice, month, name, width, scheme
):
    page.set_viewport_size({"width": width, "height": 900})
    page.emulate_media(color_scheme=scheme)
    sign_in("alice")
    page.wait_for_url("**/o/acme/")
    expect(page.locator("#campaign-pie-winter .main-svg").first).to_be_attached()
    expect(page.locator("#chart-volume .main-svg").first).to_be_attached()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.wait_for_timeout(300)
    path = screenshot(name)
    for part in ("period-charts", "campaign-panel"):  # close-ups of what this file is about
        page.locator(f"#{part}").screenshot(path=path.with_name(f"{name}-{part}.png"))


def test_the_donut_updates_in_place_when_the_campaign_panel_is_refreshed(
    sign_in, page: Page, alice, org, month
):
    sign_in("alice")
    page.wait_for_url("**/o/acme/")
    expect(page.locator("#campaign-pie-winter .main-svg").first).to_be_attached()
    page.evaluate("document.getElementById('campaign-pie-winter').__mark = 'pie'")
    events = []
    for i in range(3):
        events += [
            {
                "id": str(uuid.uuid4()),
                "type": "conversation.started",
                "bot": "luna",
                "conversation": f"late-{i}",
                "campaign": "winter",
            },
            {
                "id": str(uuid.uuid4()),
                "type": "conversation.ended",
                "bot": "luna",
                "conversation": f"late-{i}",
                "status": "resolved",
                "call_outcome": "opt_out",
            },
        ]
    assert events_ingest(org=org, events=events).accepted == len(events)
    # No socket under the test server: the page polls the same fragments every 2 s.
    wait_for_js(
        page,
        "document.getElementById('campaign-pie-winter').data[0].values.join() === '5,2,1,1,3'",
        timeout=10_000,
    )
    assert page.evaluate("document.getElementById('campaign-pie-winter').__mark") == "pie"
    expect(page.locator("#campaign-pie-winter-label")).to_contain_text("Opted out 3")
