"""Redis killed (SIGKILL, so it comes back empty, as a cache-only Redis after an OOM kill does)
while events arrive and a dashboard is open: nothing the API accepted is lost or doubled, the
dashboard moves again by itself, and its figures are PostgreSQL's again, not counted from zero."""

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.faults.clients import Ingestor, LiveSocket, wait_until

pytestmark = pytest.mark.timeout(120)

OUTAGE_SECONDS = 4


def within_one_percent(shown: int | None, stored: int) -> bool:
    return shown is not None and abs(shown - stored) <= stored / 100


def test_it_survives_a_redis_restart_during_ingestion(product):
    web = product.servers
    socket = LiveSocket(web.port, product.slug, product.session)
    socket.start()
    ingest = Ingestor(web.port, product.key)
    try:
        wait_until(lambda: socket.connects, 15, message="the dashboard socket did not connect")
        ingest.start()
        wait_until(
            lambda: (socket.last_messages_hour() or 0) > 100,
            20,
            message="the card did not count the first events",
        )

        product.redis.kill()
        killed = time.monotonic()
        wait_until(
            lambda: socket.closes and socket.closes[-1][0] > killed,
            10,
            message="the dashboard socket stayed open without Redis",
        )
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - killed)))
        accepted_during = ingest.accepted
        product.redis.start()
        restarted = time.monotonic()

        # The open dashboard reconnects and moves again within 5 s, without a reload.
        wait_until(
            lambda: socket.frames_after(restarted),
            5,
            message="no live frame within 5 s of Redis answering",
        )
        wait_until(lambda: ingest.accepted > accepted_during, 5, message="ingestion did not go on")
        time.sleep(2)
    finally:
        ingest.stop()

    rows, distinct = product.stored_messages()
    assert rows == ingest.accepted  # accepted == stored: PostgreSQL took events all along
    assert distinct == rows  # none stored twice
    # The card counts what PostgreSQL holds — also what arrived before Redis lost everything.
    wait_until(
        lambda: within_one_percent(socket.last_messages_hour(), rows),
        10,
        message=f"the card shows {socket.last_messages_hour()}, PostgreSQL holds {rows}",
    )
    socket.stop()
    assert product.still_running() == {"web": None, "pulse": None}
    pulse_log = product.log("pulse")
    assert pulse_log.count("pulse: Redis unavailable") == 1, pulse_log
    assert pulse_log.count("pulse: recovered after") == 1, pulse_log
    assert "Redis holds no live state" in pulse_log
    assert "Traceback" not in pulse_log


def test_an_open_dashboard_says_so_and_goes_live_by_itself(product, page: Page, tmp_path):
    """In a real browser: while Redis is gone the page says so (not Live) and keeps its figures
    coming by polling; once Redis answers it goes Live again without a reload."""
    web = product.servers
    page.context.add_cookies([{"name": "sessionid", "value": product.session, "url": web.url}])
    page.goto(f"{web.url}/o/{product.slug}/")
    status = page.locator("#connection-status")
    expect(status).to_have_text("Live", timeout=10_000)

    product.redis.kill()
    expect(status).to_have_text(re.compile(r"^(Reconnecting…|Polling)$"), timeout=5_000)
    page.locator(".page-head").screenshot(path=tmp_path / "redis-down.png")
    time.sleep(OUTAGE_SECONDS)
    expect(status).not_to_have_text("Live")
    product.redis.start()
    restarted = time.monotonic()
    expect(status).to_have_text("Live", timeout=10_000)
    assert time.monotonic() - restarted < 8  # reconnect delays are capped at 5 s
    expect(page.locator("#connection-announce")).to_have_text("Live")
