"""Under the site's strict Content-Security-Policy every main page works in a real browser: no
violation is reported, nothing is logged as an error, and the charts are drawn."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from analytics.services.insights import insights_refresh
from tests.e2e.conftest import wait_for_js
from tests.e2e.live_servers import sign_in_at
from tests.e2e.test_charts import month  # noqa: F401 - the fixture: a month of rolled-up data

# Every violation the page sees, recorded before any of its own scripts run.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(
    e.effectiveDirective + " blocked " + (e.blockedURI || "inline") + " at "
    + (e.sourceFile || "") + ":" + e.lineNumber + " " + (e.sample || ""));
});
"""

PAGES = [
    ("live dashboard", "/o/acme/", ["#chart-response", "#chart-volume", "#chart-activity"]),
    ("explorer", "/o/acme/conversations/", []),
    ("bot page", "/o/acme/bots/support-bot/", [".chart[data-figure]"]),
    ("campaign page", "/o/acme/campaigns/winter/", ["#chart-outcome-pie"]),
    ("insights", "/o/acme/insights/", ["[data-figure]"]),
    ("alerts", "/o/acme/alerts/", []),
]


@pytest.fixture
def month_with_insights(month):  # noqa: F811
    """The month of data, with the forecasts and anomalies the insights page draws."""
    insights_refresh(org_id=month.pk)
    return month


@pytest.fixture
def watched(page: Page):
    """The page, recording CSP violations, console errors and uncaught exceptions."""
    errors: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


@pytest.mark.usefixtures("month_with_insights")
def test_it_serves_every_main_page_without_a_csp_violation_and_draws_its_charts(
    watched,
    servers,
    alice,
    screenshot,
):
    page, errors = watched
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in_at(page, servers.url, "alice")
    page.wait_for_url("**/o/acme/")

    for name, path, charts in PAGES:
        response = page.goto(servers.url + path)
        assert response.status == 200, name
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, name
        assert "unsafe-inline" not in policy, name
        for chart in charts:
            # drawn by plotly.js: its SVG is there and its styles came from the linked sheet
            expect(page.locator(f"{chart} .main-svg").first).to_be_visible(timeout=10_000)
        if name == "live dashboard":
            expect(page.locator("#connection-status")).to_have_text("Live", timeout=10_000)
            assert wait_for_js(page, "document.getElementById('chart-response').data.length")
            screenshot("csp-live-dashboard")
        page.wait_for_timeout(300)  # late violations (htmx swaps, plotly's resize) are reported
        violations = page.evaluate("window.__cspViolations")
        assert violations == [], f"{name}: {violations}"
        assert errors == [], f"{name}: {errors}"
    # plotly.js found its rules linked and injected no <style> of its own
    assert page.evaluate("document.querySelectorAll('style').length") == 0


def test_it_keeps_the_picked_theme_without_inline_script(watched, servers, alice, org):
    page, errors = watched
    sign_in_at(page, servers.url, "alice")
    page.wait_for_url("**/o/acme/")
    page.get_by_role("button", name="Dark mode").click()

    page.reload()

    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    expect(page.get_by_role("button", name="Light mode")).to_be_visible()
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []


@pytest.mark.usefixtures("month")
def test_it_submits_the_insights_bot_picker_without_an_inline_handler(
    watched,
    servers,
    alice,
):
    page, errors = watched
    sign_in_at(page, servers.url, "alice")
    page.wait_for_url("**/o/acme/")
    page.goto(servers.url + "/o/acme/insights/")

    page.locator("#insights-bot").select_option("support-bot")

    page.wait_for_url("**/insights/?bot=support-bot")
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []


def test_it_shows_the_api_docs_with_inline_styles_only(watched, servers, db):
    page, errors = watched

    response = page.goto(servers.url + "/api/docs/")

    policy = response.headers["content-security-policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy
    assert "script-src 'self';" in policy + ";"
    expect(page.get_by_role("heading", name="BotFlow Analytics API")).to_be_visible(timeout=15_000)
    expect(page.get_by_text("/api/v1/events").first).to_be_visible()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []
