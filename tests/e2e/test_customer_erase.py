"""Erasing a customer in a browser: Team → Erase a customer → find their data → confirm → the
receipt; the page has no serious accessibility violations (axe-core)."""

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from analytics.models import Conversation
from tests.analytics.services.test_customers import CUSTOMER, OTHER, seed_customer
from tests.e2e.test_accessibility import serious


def test_an_owner_erases_a_customer_and_reads_the_receipt(
    sign_in, page: Page, alice, org, bot, settings, tmp_path, screenshot
):
    settings.EXPORT_DIR = str(tmp_path)
    seed_customer(org, bot, at=datetime.now(UTC) - timedelta(minutes=10), exports=False)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in("alice")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Team").click()
    page.get_by_role("link", name="Erase a customer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Erase a customer")
    assert serious(page) == []

    page.get_by_label("Customer identifier").fill(CUSTOMER)
    page.get_by_role("button", name="Find their data").click()
    expect(page.locator("#erase-confirm")).to_contain_text("2 conversations with 12 messages")
    assert Conversation.objects.for_org(org).filter(customer=CUSTOMER).count() == 2
    page.get_by_role("button", name="Erase this customer's data").click()

    receipt = page.locator("#erase-receipt")
    expect(receipt).to_contain_text("Erased (receipt")
    expect(receipt.locator('[data-kind="messages"]')).to_have_text("12")
    expect(receipt.locator("#receipt-counts")).to_contain_text("Live feed entries")
    expect(page.locator("#erasures")).to_contain_text("alice")
    screenshot("customer-erase-receipt")
    assert serious(page) == []
    assert not Conversation.objects.for_org(org).filter(customer=CUSTOMER).exists()
    assert Conversation.objects.for_org(org).filter(customer=OTHER).count() == 2
