"""The invite flow in a browser: an owner invites by email, the invitee follows the link from the
email, sets a password and lands in the org; the owner sees them on the team page."""

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from analytics.models import Membership, Role
from analytics.services.invitations import invitation_create

LINK = re.compile(r"https?://\S+/invite/[A-Za-z0-9_-]+/")


def test_it_invites_a_teammate_who_sets_a_password_and_lands_in_the_org(
    sign_in, screenshot, page: Page, browser: Browser, live_server, alice, bob, mailoutbox
):
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_in("alice")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Team").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Team")
    expect(page.locator("#team-members")).to_contain_text("bob")

    form = page.locator("#invite-form")
    form.get_by_label("Email").fill("dana@example.com")
    form.get_by_label("Role").select_option("analyst")
    form.get_by_role("button", name="Send invitation").click()

    expect(page.get_by_text("Invitation sent to dana@example.com as analyst.")).to_be_visible()
    expect(page.locator("#team-invitations")).to_contain_text("dana@example.com")
    assert len(mailoutbox) == 1
    link = LINK.search(mailoutbox[0].body).group(0)
    assert link.startswith(live_server.url)

    invitee = browser.new_context().new_page()
    invitee.goto(link)
    expect(invitee.get_by_role("heading", level=1)).to_have_text("Join Acme")
    expect(
        invitee.get_by_text("alice invited dana@example.com to Acme as analyst.")
    ).to_be_visible()
    invitee.get_by_label("Username").fill("dana")
    invitee.get_by_label("Password", exact=True).fill("a-long-secret-97")
    invitee.get_by_label("Password again").fill("a-long-secret-97")
    invitee.get_by_role("button", name="Create account and join").click()

    expect(invitee).to_have_url(re.compile(r"/o/acme/$"))
    expect(invitee.get_by_text("Welcome to Acme. You joined as analyst.")).to_be_visible()
    expect(invitee.get_by_role("link", name="Team")).to_have_count(0)  # analysts do not manage
    assert Membership.objects.get(user__username="dana").role == Role.ANALYST

    invitee.goto(link)  # the link worked once
    expect(invitee.locator("#invite-problem")).to_contain_text("already been used")
    invitee.context.close()

    page.reload()
    row = page.locator("#team-members tr", has_text="dana")
    expect(row).to_contain_text("Analyst")
    expect(page.locator("#team-invitations")).to_have_count(0)
    row.get_by_label("Role of dana").select_option("viewer")
    row.get_by_role("button", name="Change role").click()
    expect(page.get_by_text("dana is now viewer.")).to_be_visible()
    screenshot("team-page-1280")

    page.get_by_role("link", name="Audit").click()
    events = page.locator("#audit-events")
    expect(events).to_contain_text("member.role_changed")
    expect(events).to_contain_text("member.joined")
    expect(events).to_contain_text("member.invited")
    screenshot("audit-page-1280")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_team_audit_and_invite_pages_have_no_serious_violations(
    page: Page, sign_in, live_server, alice, bob, org, mailoutbox, scheme
):
    from tests.e2e.test_accessibility import serious

    sent = invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.ADMIN)
    page.emulate_media(color_scheme=scheme)
    page.goto(sent.url.replace("http://localhost:8000", live_server.url))
    expect(page.get_by_role("button", name="Create account and join")).to_be_visible()
    assert serious(page) == []
    sign_in("alice")
    for path in ("/o/acme/team/", "/o/acme/audit/"):
        page.goto(f"{live_server.url}{path}")
        assert serious(page) == [], path


def test_the_team_audit_and_invite_pages_keep_the_strict_csp(
    page: Page, live_server, alice, bob, org, mailoutbox
):
    from tests.e2e.conftest import PASSWORD
    from tests.e2e.test_csp import RECORD_VIOLATIONS

    errors: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sent = invitation_create(org=org, actor=alice, email="dana@example.com", role=Role.VIEWER)

    def check(response, url):
        assert response.status == 200, url
        assert "unsafe-inline" not in response.headers["content-security-policy"], url
        page.wait_for_timeout(200)
        assert page.evaluate("window.__cspViolations") == [], url
        assert errors == [], url

    invite_url = sent.url.replace("http://localhost:8000", live_server.url)
    check(page.goto(invite_url), invite_url)
    # sign in straight to the team page (the live dashboard's socket needs daphne, not this server)
    page.goto(f"{live_server.url}/accounts/login/?next=/o/acme/team/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/o/acme/team/")
    for path in ("/o/acme/team/", "/o/acme/audit/"):
        check(page.goto(live_server.url + path), path)
