"""Browser tests: system Chromium driven by pytest-playwright against pytest-django's live_server."""

import time
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Page

from analytics.models import Role
from tests.factories import MembershipFactory, UserFactory

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium floods the closed network with refused
# connections (see /work/shared/NOTES.md, "Browsers").
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw-botflow-123"  # UserFactory's password
SCREENSHOTS = Path(settings.BASE_DIR) / "test-results" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(autouse=True)
def _e2e_db(transactional_db):
    """The live server reads from another thread, so the data must be committed."""


@pytest.fixture
def sign_in(page: Page, live_server):
    """Sign in through the login form as `username` and return the page."""

    def _sign_in(username: str, password: str = PASSWORD) -> Page:
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        return page

    return _sign_in


@pytest.fixture
def screenshot(page: Page):
    """Save a full-page screenshot to test-results/screenshots/<name>.png."""

    def _screenshot(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return _screenshot


@pytest.fixture
def two_org_user(org, other_org):
    """A member of both `org` (Acme) and `other_org` (Globex)."""
    user = UserFactory(username="dana")
    MembershipFactory(organization=org, user=user, role=Role.VIEWER)
    MembershipFactory(organization=other_org, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def servers():
    """daphne and pulse as real processes on the test database (WebSockets need them)."""
    from tests.e2e.live_servers import Servers

    s = Servers()
    s.start()
    yield s
    s.stop()


def wait_for_js(page: Page, expression: str, timeout: float = 5_000) -> object:
    """Poll `expression` with page.evaluate until it is truthy, and return its value.

    page.wait_for_function compiles its predicate with eval inside the page, which the site's
    Content-Security-Policy (no 'unsafe-eval') forbids; page.evaluate is not subject to it.
    """
    deadline = time.monotonic() + timeout / 1000
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still falsy after {timeout:.0f} ms: {expression}")
        page.wait_for_timeout(50)
