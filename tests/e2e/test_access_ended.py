"""When access ends elsewhere, the open dashboard says so within seconds and stops retrying."""

from django.test import Client
from playwright.sync_api import Page, expect

from analytics.models import Membership
from tests.e2e.live_servers import sign_in_at


def session_client(page: Page) -> Client:
    """A second client on the browser's own session (another request, as another tab sends)."""
    cookie = next(c for c in page.context.cookies() if c["name"] == "sessionid")
    client = Client()
    client.cookies["sessionid"] = cookie["value"]
    return client


def test_it_says_the_session_ended_when_signed_out_elsewhere(
    page: Page, servers, alice, org, screenshot
):
    sign_in_at(page, servers.url, "alice")
    status = page.locator("#connection-status")
    expect(status).to_have_text("Live", timeout=10_000)
    notice = page.locator("#access-ended")
    expect(notice).to_be_hidden()

    assert session_client(page).post("/accounts/logout/").status_code == 302
    expect(notice).to_be_visible(timeout=3_000)
    expect(notice).to_contain_text("Your session has ended — sign in again.")
    expect(status).to_have_text("Signed out")
    screenshot("access-ended-signed-out")
    page.wait_for_timeout(2_500)  # no reconnect, no polling: the notice stays
    expect(status).to_have_text("Signed out")
    page.get_by_role("link", name="Sign in").click()
    expect(page).to_have_url(f"{servers.url}/accounts/login/?next=/o/acme/")


def test_it_says_access_ended_when_removed_from_the_org(page: Page, servers, bob, org):
    sign_in_at(page, servers.url, "bob")
    expect(page.locator("#connection-status")).to_have_text("Live", timeout=10_000)
    Membership.objects.filter(organization=org, user=bob).delete()
    notice = page.locator("#access-ended")
    expect(notice).to_be_visible(timeout=3_000)
    expect(notice).to_contain_text("You no longer have access to this organization.")
    expect(page.locator("#connection-status")).to_have_text("No access")
