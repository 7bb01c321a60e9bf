"""The page's socket opens only from the page's own origin: same scheme, host and port."""

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from tests.dashboard.test_consumers import run

pytestmark = pytest.mark.django_db(transaction=True)


def attempt(user, origin: bytes | None, host: bytes = b"testserver", scheme: str = "ws"):
    client = Client()
    client.force_login(user)
    headers = [
        (b"host", host),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]
    if origin is not None:
        headers.append((b"origin", origin))

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/o/acme/live/", headers)
        communicator.scope["scheme"] = scheme  # what daphne sets (wss behind TLS / proxy headers)
        connected, _ = await communicator.connect(timeout=5)
        if connected:
            await communicator.disconnect()
        return connected

    return run(scenario)


def test_it_accepts_the_pages_own_origin(org, alice):
    assert attempt(alice, b"http://testserver")
    assert attempt(alice, b"http://testserver:8000", host=b"testserver:8000")
    assert attempt(alice, b"https://testserver", scheme="wss")
    assert attempt(alice, b"https://testserver:443", scheme="wss")  # the default port, spelt out


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        (b"http://evil.example:8000", b"testserver:8000", "ws"),  # another site
        (b"http://evil.example:8000", b"evil.example:8000", "ws"),  # a host not in ALLOWED_HOSTS
        (b"http://testserver:8001", b"testserver:8000", "ws"),  # wrong port
        (b"http://testserver:8000", b"testserver", "ws"),  # wrong port (page on 80)
        (b"https://testserver", b"testserver", "ws"),  # wrong scheme
        (b"http://testserver", b"testserver", "wss"),  # an http page on an https site
        (b"http://testserver.evil.example", b"testserver", "ws"),
        (b"null", b"testserver", "ws"),  # sandboxed iframes, file:// pages
        (b"http://user@testserver", b"testserver", "ws"),
        (None, b"testserver", "ws"),  # no Origin at all
    ],
)
def test_it_refuses_any_other_origin(org, alice, origin, host, scheme):
    assert not attempt(alice, origin, host=host, scheme=scheme)


def test_it_accepts_an_origin_listed_in_the_setting(org, alice, settings):
    settings.WS_ALLOWED_ORIGINS = ["https://app.example.com"]
    assert attempt(alice, b"https://app.example.com")
    assert not attempt(alice, b"https://app.example.com:8443")
    assert not attempt(alice, b"http://app.example.com")
