"""Narrowing the live page to one bot in a real browser, against real daphne + pulse."""

import uuid

from playwright.sync_api import Page, expect

from analytics.services.api_keys import api_key_create
from tests.e2e.live_servers import post_events, sign_in_at
from tests.factories import BotFactory


def messages(bot: str, n: int, text: str) -> list[dict]:
    return [
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": bot,
            "conversation": f"{bot}-{i}",
            "direction": "inbound",
            "text": text,
        }
        for i in range(n)
    ]


def test_a_user_narrows_the_live_page_to_one_bot_and_back(page: Page, servers, alice, org, bot):
    BotFactory(organization=org, slug="sales-bot", name="Sales")
    key = api_key_create(organization=org, name="scope", scopes="ingest").secret
    sign_in_at(page, servers.url, "alice")
    expect(page.locator("#connection-status")).to_have_text("Live", timeout=10_000)
    count = page.locator("#metric-messages-hour .value")

    page.get_by_label("Show").select_option(label="Sales")
    expect(page.locator("#live-metrics")).to_have_attribute("data-scope", "bot:sales-bot")
    assert page.url.endswith("/o/acme/?scope=bot%3Asales-bot")
    post_events(
        servers,
        key,
        messages("support-bot", 5, "for support") + messages("sales-bot", 3, "for sales"),
    )
    expect(count).to_have_text("3", timeout=2_000)  # only Sales's messages
    expect(page.locator("#live-feed")).to_contain_text("for sales")
    expect(page.locator("#live-feed")).not_to_contain_text("for support")

    page.get_by_label("Show").select_option(label="All bots and campaigns")
    expect(page.locator("#live-metrics")).to_have_attribute("data-scope", "", timeout=2_000)
    expect(count).to_have_text("8", timeout=2_000)
    post_events(servers, key, messages("support-bot", 1, "one more"))
    expect(count).to_have_text("9", timeout=2_000)

    page.reload()  # the scope is in the address, so a reload (or a shared link) keeps it
    page.get_by_label("Show").select_option(label="Sales")
    page.reload()
    expect(page.locator("#live-metrics")).to_have_attribute("data-scope", "bot:sales-bot")
    expect(count).to_have_text("3")
