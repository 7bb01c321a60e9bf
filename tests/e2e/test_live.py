"""The live dashboard in a real browser against real daphne + pulse processes."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from django.conf import settings
from django.db import connection
from playwright.sync_api import Page, expect

from analytics.services.api_keys import api_key_create

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url_of_tests() -> str:
    """A DATABASE_URL for the test database (TCP or, for the embedded server, a socket dir)."""
    db = connection.settings_dict
    auth = f"{db['USER']}:{db['PASSWORD']}@"
    if db["HOST"].startswith("/"):
        return f"postgres://{auth}/{db['NAME']}?host={db['HOST']}"
    return f"postgres://{auth}{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


class Servers:
    """daphne and pulse as real processes on the test database and this run's Redis prefix."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url_of_tests(),
            "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
            "STATIC_MANIFEST": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
        self.web = self.pulse = None

    def start_web(self) -> None:
        daphne = str(Path(sys.executable).parent / "daphne")
        self.web = subprocess.Popen(
            [daphne, "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("daphne did not start")

    def stop_web(self) -> None:
        self.web.terminate()
        self.web.wait(timeout=10)

    def start(self) -> None:
        self.start_web()
        self.pulse = subprocess.Popen(
            [sys.executable, "manage.py", "pulse"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        for proc in (self.web, self.pulse):
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


@pytest.fixture
def servers():
    s = Servers()
    s.start()
    yield s
    s.stop()


def ingest(servers: Servers, key: str, n: int) -> None:
    events = [
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": "support-bot",
            "conversation": f"live-{i // 2}",
            "direction": "inbound" if i % 2 == 0 else "outbound",
            "text": "<script>alert(1)</script>",
            **({"response_time_ms": 640, "outcome": "success"} if i % 2 else {}),
        }
        for i in range(n)
    ]
    request = urllib.request.Request(
        f"{servers.url}/api/v1/events",
        data=orjson.dumps({"events": events}),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert orjson.loads(response.read())["accepted"] == n


def sign_in_at(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-botflow-123")
    page.get_by_role("button", name="Sign in").click()


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
    page.wait_for_function(f"{bars} >= 1", timeout=2_000)
    # updated with Plotly.react on the same element, not by replacing the chart's DOM
    assert page.evaluate("document.getElementById('chart-activity').dataset.marker") == "same-node"
