"""The live dashboard in a real browser against real daphne + pulse processes."""

from playwright.sync_api import Page, expect

from analytics.services.api_keys import api_key_create
from tests.e2e.conftest import wait_for_js
from tests.e2e.live_servers import ingest, sign_in_at


def test_it_shows_new_events_live_and_reconnects(page: Page, servers, alice, org, bot, screenshot):
    key = api_key_create(organization=org, name="live", scopes="ingest").secret
    sign_in_at(page, servers.url, "alice")
    status = page.locator("#connection-status")
    expect(status).to_have_text("Live", timeout=10_000)
    messages = page.locator("#metric-messages-hour .value")
    expect(messages).to_have_text("0")

    ingest(servers, key, 8)
    expect(messages).to_have_text("8", timeout=1_000)
    expect(page.locator("#metric-avg-response .value")).to_have_text("640 ms", timeout=1_000)
    first_row = page.locator("#live-feed .feed-row").first
    expect(first_row).to_contain_text("<script>alert(1)</script>", timeout=1_000)  # shown as text
    assert page.locator("#live-feed script").count() == 0
    ingest(servers, key, 4)
    expect(messages).to_have_text("12", timeout=1_000)
    screenshot("live-dashboard")

    servers.stop_web()  # the server drops every socket
    expect(status).to_have_text("Reconnecting…", timeout=5_000)
    servers.start_web()
    expect(status).to_have_text("Live", timeout=20_000)
    ingest(servers, key, 2)
    expect(messages).to_have_text("14", timeout=1_000)


def test_the_activity_chart_draws_and_grows_in_place(page: Page, servers, alice, org, bot):
    key = api_key_create(organization=org, name="chart", scopes="ingest").secret
    sign_in_at(page, servers.url, "alice")
    expect(page.locator("#connection-status")).to_have_text("Live", timeout=10_000)
    chart = page.locator("#chart-activity .main-svg").first
    expect(chart).to_be_visible(timeout=5_000)
    page.evaluate("document.getElementById('chart-activity').dataset.marker = 'same-node'")
    ingest(servers, key, 6)
    expect(page.locator("#chart-activity-data table tbody tr").last).to_contain_text(
        "6", timeout=2_000
    )
    bars = "document.querySelectorAll('#chart-activity .bars .point').length"
    wait_for_js(page, f"{bars} >= 1", timeout=2_000)
    # updated with Plotly.react on the same element, not by replacing the chart's DOM
    assert page.evaluate("document.getElementById('chart-activity').dataset.marker") == "same-node"
