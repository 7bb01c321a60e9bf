"""The indicator never says Live over frozen figures: a real browser, daphne and pulse."""

import re
import time

from playwright.sync_api import Page, WebSocketRoute, expect

from tests.e2e.live_servers import sign_in_at

STALE = re.compile(r"^Stale · updated (\d+) s ago$")


def stale_age(page: Page) -> int:
    match = STALE.match(page.locator("#connection-status").inner_text())
    assert match, page.locator("#connection-status").inner_text()
    return int(match.group(1))


def test_it_says_stale_when_pulse_dies_and_live_again_when_it_is_back(
    page: Page, servers, alice, org, bot, tmp_path
):
    sign_in_at(page, servers.url, "alice")
    status = page.locator("#connection-status")
    announcer = page.locator("#connection-announce")
    expect(status).to_have_text("Live", timeout=10_000)
    page.wait_for_timeout(12_000)  # past the 10 s of silence: heartbeats keep an idle page Live
    expect(status).to_have_text("Live")

    servers.stop_pulse()
    killed = time.monotonic()
    expect(status).to_have_text(STALE, timeout=17_000)
    assert time.monotonic() - killed < 16  # 10 s of silence after the last heartbeat (≤ 6 s)
    first = stale_age(page)
    assert 9 <= first <= 17
    expect(announcer).to_have_text(re.compile(r"^Stale: figures last updated \d+ seconds ago$"))
    spoken = announcer.inner_text()
    page.wait_for_timeout(2_100)
    assert stale_age(page) >= first + 2  # the age counts up on screen...
    assert announcer.inner_text() == spoken  # ...but a screen reader hears the change once

    head = page.locator(".page-head")
    head.screenshot(path=tmp_path / "stale-light.png")
    page.emulate_media(color_scheme="dark")
    head.screenshot(path=tmp_path / "stale-dark.png")
    page.emulate_media(color_scheme="light")

    servers.start_pulse()
    expect(status).to_have_text("Live", timeout=20_000)
    expect(announcer).to_have_text("Live")


def test_polling_says_stale_when_polls_fail_and_polling_when_they_pass(
    page: Page, servers, alice, org, bot
):
    # The socket closes normally (code 1000: htmx does not reconnect), so the page polls.
    page.route_web_socket(re.compile(r"/ws/o/"), lambda ws: ws.close(code=1000))
    sign_in_at(page, servers.url, "alice")
    status = page.locator("#connection-status")
    expect(status).to_have_text("Polling", timeout=10_000)

    page.route(re.compile(r"/live/metrics"), lambda route: route.abort())
    expect(status).to_have_text(STALE, timeout=20_000)
    assert 15 <= stale_age(page) <= 20

    page.unroute(re.compile(r"/live/metrics"))
    expect(status).to_have_text("Polling", timeout=5_000)


def test_frames_without_fresh_data_are_stale_too(page: Page, servers, alice, org, bot):
    """Heartbeats keep coming but every stamp in them is old (a pulse rendering from a frozen
    clock, a replaying proxy): the data's age decides, not the socket's chatter."""
    frozen = {"on": True}

    def relay(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def age(message):
            if frozen["on"] and isinstance(message, str):
                message = re.sub(r'data-as-of="\d+"', 'data-as-of="1000000"', message)
            ws.send(message)

        server.on_message(age)

    page.route_web_socket(re.compile(r"/ws/o/"), relay)
    sign_in_at(page, servers.url, "alice")
    status = page.locator("#connection-status")
    expect(status).to_have_text("Live", timeout=10_000)
    page.route(re.compile(r"/live/metrics"), lambda route: route.abort())  # no fresh snapshots
    expect(status).to_have_text(STALE, timeout=22_000)

    frozen["on"] = False
    page.unroute(re.compile(r"/live/metrics"))
    expect(status).to_have_text("Live", timeout=8_000)
