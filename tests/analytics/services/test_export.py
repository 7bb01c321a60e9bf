"""CSV exports through the real ASGI application: an empty result, a stream that fails midway,
and the database connections each leaves behind (the pool must get every one of them back)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.testing import HttpCommunicator
from django.db import DatabaseError, connection
from django.test import Client

from analytics.services.api_keys import api_key_create
from analytics.services.export import (
    CONVERSATION_COLUMNS,
    INTERRUPTED_LINE,
    CsvStreamingResponse,
)
from config.asgi import application
from tests import factories as f

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = ",".join(name for name, _expr in CONVERSATION_COLUMNS).encode() + b"\n"


def run(coroutine):
    # Its own loop in its own thread, as daphne would run it (and away from Playwright's loop).
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def asgi_get(path, headers, timeout=10):
    async def go():
        communicator = HttpCommunicator(
            application, "GET", path, headers=[(b"host", b"testserver"), *headers]
        )
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(timeout)
        body = b""
        while True:  # until the last part (more_body false): a response that ends
            part = await communicator.receive_output(timeout)
            body += part.get("body", b"")
            if not part.get("more_body", False):
                break
        await communicator.wait(timeout)  # the application's own end (it closes the response)
        return {"status": start["status"], "body": body}

    return run(go())


def checked_out() -> int:
    """Connections of the pool in use right now (the test's own included)."""
    stats = connection.pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


@pytest.fixture
def conversations(bot):
    for i in range(3):
        c = f.ConversationFactory(bot=bot, customer=f"Customer {i}")
        f.MessageFactory(conversation=c, text="hello refund", created_at=c.started_at)


@pytest.fixture
def read_headers(org):
    secret = api_key_create(organization=org, name="reader", scopes="read").secret
    return [(b"authorization", f"Bearer {secret}".encode())]


@pytest.fixture
def session_headers(alice):
    client = Client()
    client.force_login(alice)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def test_it_answers_an_api_export_with_no_hits_at_once_with_the_header_only(
    conversations, read_headers
):
    connection.ensure_connection()
    before = checked_out()
    started = time.monotonic()
    # More requests than the pool has connections: each used to keep one for good.
    for _ in range(25):
        response = asgi_get("/api/v1/conversations/?format=csv&q=zzqxnothing", read_headers)
        assert response["status"] == 200
        assert response["body"] == HEADER
    assert time.monotonic() - started < 20
    assert checked_out() <= before
    normal = asgi_get("/api/v1/conversations/?format=csv&q=refund", read_headers)
    assert normal["status"] == 200
    assert normal["body"].startswith(HEADER)
    assert normal["body"].count(b"\n") == 4  # the header and the three conversations


def test_it_answers_an_explorer_export_with_no_hits_with_the_header_only(
    org, conversations, session_headers
):
    connection.ensure_connection()
    before = checked_out()
    for _ in range(25):
        response = asgi_get(
            f"/o/{org.slug}/conversations/export.csv?q=zzqxnothing", session_headers
        )
        assert response["status"] == 200
        assert response["body"] == HEADER
    messages = asgi_get(
        f"/o/{org.slug}/conversations/export.csv?q=zzqxnothing&kind=messages", session_headers
    )
    assert messages["body"].startswith(b"id,conversation_id,bot,created_at")
    assert messages["body"].count(b"\n") == 1
    assert checked_out() <= before
    normal = asgi_get(f"/o/{org.slug}/conversations/export.csv?q=refund", session_headers)
    assert normal["body"].count(b"\n") == 4


def test_it_ends_a_stream_that_fails_midway_and_returns_its_connection(conversations):
    connection.ensure_connection()
    before = checked_out()

    def chunks():
        yield b"id\n"
        with connection.cursor() as cursor:  # a connection of the streaming thread
            cursor.execute("SELECT 1")
        raise DatabaseError("the server went away")

    async def stream():
        response = CsvStreamingResponse(chunks(), filename="x.csv")
        return [part async for part in response]

    parts = run(stream())
    assert parts == [b"id\n", INTERRUPTED_LINE]
    assert checked_out() <= before
