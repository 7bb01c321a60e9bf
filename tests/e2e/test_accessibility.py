"""WCAG 2.1 AA in the browser (axe-core): no serious or critical violations, light and dark."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

from tests.factories import BotFactory, CampaignFactory, ConversationFactory, MessageFactory

AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def serious(page: Page) -> list[str]:
    results = Axe().run(page, options=AXE_OPTIONS)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_sign_in_page_has_no_serious_violations(page: Page, live_server, scheme):
    page.emulate_media(color_scheme=scheme)
    page.goto(f"{live_server.url}/accounts/login/")
    assert serious(page) == []


@pytest.mark.parametrize(("scheme", "width"), [("light", 1280), ("dark", 1280), ("light", 390)])
def test_the_org_page_has_no_serious_violations(page: Page, sign_in, alice, org, scheme, width):
    bot = BotFactory(organization=org, name="Luna", kind="ai_employee", persona="Customer Success")
    campaign = CampaignFactory(organization=org, name="Winter Renewals", bot=bot)
    MessageFactory(
        conversation=ConversationFactory(bot=bot, campaign=campaign, call_outcome="converted")
    )
    page.set_viewport_size({"width": width, "height": 900})
    page.emulate_media(color_scheme=scheme)
    sign_in("alice")
    page.wait_for_url("**/o/acme/")
    assert serious(page) == []
