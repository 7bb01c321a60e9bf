"""Browser checks of the explore pages: axe (light, dark, 390 px), HTMX filtering, chart drill-down.

Screenshots land in test-results/screenshots/explore-*.png.
"""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from analytics.models import Bot
from tests import factories as f
from tests.e2e.test_accessibility import serious


@pytest.fixture
def explore_data(org):
    now = timezone.now()
    support = f.BotFactory(organization=org, slug="support-bot", name="Support Assistant")
    luna = f.BotFactory(
        organization=org,
        slug="luna",
        name="Luna",
        kind=Bot.Kind.AI_EMPLOYEE,
        persona="Sales Specialist",
        avatar="🌙",
    )
    winter = f.CampaignFactory(organization=org, slug="winter", name="Winter Renewals", bot=luna)
    outcomes = ["answered", "converted", "busy", "no_answer", "failed", "answered", "converted"]
    for i in range(14):
        bot = luna if i % 2 else support
        c = f.ConversationFactory(
            bot=bot,
            customer=f"Customer {i}",
            started_at=now - timedelta(hours=i * 5 + 1),
            campaign=winter if bot == luna else None,
            status=["resolved", "escalated"][i % 2],
            call_outcome=outcomes[i % 7] if bot == luna else "",
            csat=(i % 5) + 1,
        )
        f.MessageFactory(
            conversation=c,
            direction="inbound",
            text=f"I need a refund, order {i}",
            response_time_ms=None,
            created_at=c.started_at,
        )
        f.MessageFactory(
            conversation=c,
            text="Sure, refund started.",
            response_time_ms=700 + i * 40,
            created_at=c.started_at + timedelta(seconds=4),
        )
        f.ConversationMetricsFactory(
            conversation=c,
            total_messages=2,
            duration_seconds=60 + i * 10,
            avg_response_time_ms=700 + i * 40,
            cost_usd=Decimal("0.01") * i,
        )
    for h in range(1, 48):
        hour = (now - timedelta(hours=h)).replace(minute=0, second=0, microsecond=0)
        for bot in (support, luna):
            f.BotHourlyRollupFactory(
                bot=bot,
                hour=hour,
                messages_in=20 + h % 7,
                messages_out=20 + h % 5,
                successes=18,
                failures=1,
                fallbacks=1,
                kb_hits=12,
                kb_misses=3,
                tokens=4000 + h * 10,
                cost_usd=Decimal("0.8"),
                response_count=20,
                response_sum_ms=20 * (700 + h * 5),
                response_hist={str(330 + h % 9): 15, "360": 5},
                conversations_started=3,
                conversations_ended=3,
                handoffs=h % 2,
                csat_sum=12,
                csat_count=3,
                calls=2 if bot == luna else 0,
                bookings=1 if bot == luna else 0,
                revenue=Decimal("120") if bot == luna else 0,
            )
    return {"support": support, "luna": luna, "winter": winter}


PAGES = [
    ("conversations", "/o/acme/conversations/?period=7d"),
    ("transcript", None),
    ("bot", "/o/acme/bots/luna/?period=7d"),
    ("campaign", "/o/acme/campaigns/winter/?period=7d"),
]


@pytest.mark.parametrize(("scheme", "width"), [("light", 1280), ("dark", 1280), ("light", 390)])
@pytest.mark.parametrize(("name", "path"), PAGES)
def test_the_explore_pages_have_no_serious_violations(
    page: Page, sign_in, alice, explore_data, live_server, screenshot, scheme, width, name, path
):
    from analytics.models import Conversation

    if path is None:
        path = f"/o/acme/conversations/{Conversation.objects.order_by('-started_at')[0].pk}/"
    page.set_viewport_size({"width": width, "height": 900})
    page.emulate_media(color_scheme=scheme)
    sign_in("alice")
    page.wait_for_url("**/o/acme/")
    page.goto(f"{live_server.url}{path}")
    if name in ("bot", "campaign"):
        page.wait_for_selector(".chart .main-svg")
    assert serious(page) == []
    path = screenshot(f"explore-{name}-{scheme}-{width}")
    if os.environ.get("EXPLORE_SHOTS"):  # a copy other sessions' test runs will not clean up
        shutil.copy(path, os.environ["EXPLORE_SHOTS"])


def test_filters_update_the_table_in_place_and_the_url(
    page: Page, sign_in, alice, explore_data, live_server
):
    sign_in("alice")
    page.wait_for_url("**/o/acme/")
    page.get_by_role("link", name="Conversations").first.click()
    page.wait_for_url("**/o/acme/conversations/")
    rows = page.locator("#conversations-table tbody tr")
    expect(rows).to_have_count(14)
    page.get_by_label("Bot", exact=True).select_option("luna")
    expect(rows).to_have_count(7)
    assert "bot=luna" in page.url
    page.get_by_label("Search messages").fill('"order 3"')
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Customer 3")
    page.get_by_label("Search messages").fill("refund & co")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_role("alert")).to_contain_text("remove &")


def test_clicking_a_bar_opens_the_explorer_for_that_bot_and_bucket(
    page: Page, sign_in, alice, explore_data, live_server
):
    sign_in("alice")
    page.wait_for_url("**/o/acme/")
    page.goto(f"{live_server.url}/o/acme/bots/support-bot/?period=24h")
    page.wait_for_selector("#chart-volume .main-svg")
    bars = page.locator("#chart-volume .bars .point path")
    expect(bars.first).to_be_visible()
    bars.nth(bars.count() - 3).click(force=True)
    page.wait_for_url("**/o/acme/conversations/?bot=support-bot&start=*")
    expect(page.locator("#results-summary")).to_contain_text("Custom range")
