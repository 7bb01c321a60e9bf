"""Signing in through the browser: the form, its error, and where each kind of user lands."""

import re

from playwright.sync_api import Page, expect

from analytics.models import Direction
from analytics.services.live import live_rebuild
from tests.factories import ConversationFactory, MessageFactory


def bot_row_cells(page: Page, bot_slug: str) -> dict[str, str]:
    """The bot's row in the "bots-today" table as {column header: cell text}."""
    table = page.locator("#bots-today")
    headers = [t.strip() for t in table.locator("thead th").all_text_contents()]
    row = table.locator(f'tbody tr[data-bot="{bot_slug}"]')
    cells = [" ".join(t.split()) for t in row.locator("th, td").all_text_contents()]
    return dict(zip(headers, cells, strict=True))


def test_it_signs_in_and_shows_todays_counts_for_the_bot(sign_in, screenshot, page, alice, bot):
    conversation = ConversationFactory(bot=bot)
    MessageFactory.create_batch(3, conversation=conversation, direction=Direction.OUTBOUND)
    MessageFactory.create_batch(2, conversation=conversation, direction=Direction.INBOUND)
    # Rows written behind ingestion's back: rebuild the live minute counters the page reads.
    live_rebuild(org=bot.organization)
    page.set_viewport_size({"width": 1280, "height": 800})

    sign_in("alice")

    expect(page).to_have_url(re.compile(r"/o/acme/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme")
    expect(page.locator("#bots-today")).to_contain_text("Support Assistant")
    cells = bot_row_cells(page, "support-bot")
    assert cells["Messages in"] == "2"
    assert cells["Messages out"] == "3"
    assert cells["Conversations"] == "1"
    expect(page.locator("#metric-messages-today .value")).to_have_text("5")
    expect(page.locator("#metric-conversations-today .value")).to_have_text("1")
    screenshot("dashboard-desktop-1280")


def test_it_shows_an_error_for_a_wrong_password(sign_in, page, alice):
    sign_in("alice", "not-the-password")

    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("Username")).to_have_value("alice")


def test_it_lets_a_member_of_two_orgs_pick_one(sign_in, page, two_org_user):
    sign_in("dana")

    expect(page.get_by_role("heading", name="Choose an organization")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Acme"))).to_be_visible()
    page.get_by_role("link", name=re.compile("Globex")).click()

    expect(page).to_have_url(re.compile(r"/o/globex/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Globex")
