"""The org dashboard as a signed-in user sees it: small screens, dark mode, hostile bot names."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from analytics.models import Bot, Channel, Direction, Outcome
from tests.factories import ActivityFactory, BotFactory, ConversationFactory, MessageFactory

XSS_NAME = "<img src=x onerror=alert(1)>"


def channels(css_color: str) -> list[int]:
    """[r, g, b] of a computed "rgb(...)" / "rgba(...)" colour."""
    return [int(v) for v in re.findall(r"\d+", css_color)[:3]]


@pytest.fixture
def busy_org(org, bot):
    """Acme with a chatbot, an AI employee and a WhatsApp bot, each with some traffic today."""
    employee = BotFactory(
        organization=org,
        slug="ava",
        name="Ava Receptionist",
        kind=Bot.Kind.AI_EMPLOYEE,
        persona="Front-desk Specialist",
        avatar="👩‍💼",
    )
    whatsapp = BotFactory(
        organization=org, slug="wa-orders", name="Order Status", channel=Channel.WHATSAPP
    )
    for b, n in ((bot, 4), (employee, 2), (whatsapp, 7)):
        for i in range(n):
            conversation = ConversationFactory(bot=b)
            MessageFactory(conversation=conversation, direction=Direction.INBOUND)
            MessageFactory(
                conversation=conversation,
                outcome=Outcome.FAILED if i % 3 == 2 else Outcome.SUCCESS,
                response_time_ms=600 + 150 * i,
            )
    ActivityFactory.create_batch(3, bot=employee, value=Decimal("1240.50"))
    return org


def test_it_fits_a_390px_screen_without_page_scroll(sign_in, screenshot, page, alice, busy_org):
    page.set_viewport_size({"width": 390, "height": 844})

    sign_in("alice")

    expect(page.locator("#bots-today")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The wide table scrolls inside its own wrapper, which stays within the screen.
    wrap = page.locator(".table-wrap").bounding_box()
    assert wrap["x"] >= 0 and wrap["x"] + wrap["width"] <= 390
    screenshot("dashboard-mobile-390")


def test_it_follows_the_dark_color_scheme(sign_in, screenshot, page, alice, busy_org):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="dark")

    sign_in("alice")

    expect(page.locator("#bots-today")).to_contain_text("Ava Receptionist")
    # A dark page with light text, whatever the exact palette.
    background, text = page.evaluate(
        "[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
    )
    assert max(channels(background)) < 64
    assert min(channels(text)) > 192
    screenshot("dashboard-desktop-1280-dark")


def test_it_renders_a_hostile_bot_name_as_text(sign_in, page, alice, org):
    BotFactory(organization=org, slug="evil", name=XSS_NAME)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    sign_in("alice")

    row = page.locator('#bots-today tbody tr[data-bot="evil"]')
    name_cell = row.get_by_role("rowheader")
    expect(name_cell).to_be_visible()
    expect(name_cell).to_contain_text(XSS_NAME)
    expect(page.locator("#bots-today img")).to_have_count(0)
    assert dialogs == []


def test_the_theme_toggle_switches_and_is_remembered(sign_in, page, alice, busy_org):
    page.emulate_media(color_scheme="light")
    sign_in("alice")
    page.wait_for_url("**/o/acme/")
    background = "getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.get_by_role("button", name="Dark mode").click()
    dark = page.evaluate(background)
    assert dark != light
    page.reload()
    assert page.evaluate(background) == dark  # remembered across pages
    assert page.get_by_role("button", name="Light mode").get_attribute("aria-pressed") == "true"
