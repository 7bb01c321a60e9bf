"""PostgreSQL stopped for seconds while events arrive and a dashboard is open: nothing the API
accepted is lost or doubled, and the dashboard moves again by itself soon after the restart."""

import time
import urllib.error
import urllib.request

import pytest

from tests.faults.clients import Ingestor, LiveSocket, wait_until

pytestmark = pytest.mark.timeout(120)

OUTAGE_SECONDS = 7


def test_it_survives_a_postgres_restart_during_ingestion(product):
    web = product.servers
    socket = LiveSocket(web.port, product.slug, product.session)
    socket.start()
    ingest = Ingestor(web.port, product.key)
    try:
        wait_until(lambda: socket.connects, 15, message="the dashboard socket did not connect")
        ingest.start()
        wait_until(
            lambda: socket.last_messages_hour(), 15, message="no live frame before the outage"
        )

        product.pg.stop("fast")
        stopped = time.monotonic()
        wait_until(lambda: ingest.statuses[503], 10, message="the API did not refuse with 503")
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        product.pg.start()
        restarted = time.monotonic()

        # The open dashboard moves again within 5 s of PostgreSQL answering, without a reload.
        wait_until(
            lambda: socket.frames_after(restarted),
            5,
            message="no live frame within 5 s of the restart",
        )
        accepted_after = ingest.accepted
        wait_until(
            lambda: ingest.accepted > accepted_after,
            5,
            message="ingestion did not resume within 5 s",
        )
        time.sleep(2)
    finally:
        ingest.stop()

    rows, distinct = product.stored_messages()
    assert rows == ingest.accepted  # accepted == stored
    assert distinct == rows  # no event stored twice
    # The last figure the viewer sees is the stored count (nothing lost on the way to the page).
    wait_until(
        lambda: socket.last_messages_hour() == rows,
        10,
        message=f"the card shows {socket.last_messages_hour()}, PostgreSQL holds {rows}",
    )
    socket.stop()
    assert product.still_running() == {"web": None, "pulse": None}
    # One warning when the outage started, one line when it ended: not a traceback per tick.
    pulse_log = product.log("pulse")
    assert pulse_log.count("WARNING botflow.pulse: pulse: PostgreSQL unavailable") == 1, pulse_log
    assert pulse_log.count("pulse: recovered after") == 1, pulse_log
    assert "Traceback" not in pulse_log


def _get(product, path: str, **headers) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(
        product.servers.url + path, headers={"Cookie": f"sessionid={product.session}", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_it_answers_pages_and_the_api_with_retry_later_while_postgres_is_down(product):
    dashboard = f"/o/{product.slug}/"
    assert _get(product, dashboard)[0] == 200
    product.pg.stop("fast")
    try:
        status, headers, body = _get(product, dashboard)
        assert status == 503  # not a 500 with a traceback
        assert b"Data temporarily unavailable, retrying" in body
        assert headers["Retry-After"] == "5"
        status, headers, body = _get(
            product, "/api/v1/analytics/realtime", Authorization=f"Bearer {product.key}"
        )
        assert status == 503 and headers["Retry-After"] == "5"
        assert b"database is unavailable" in body
    finally:
        product.pg.start()
    # The pool's connections died with the server: the first requests after the restart get
    # fresh ones (a pool handing out a dead connection would answer them 503).
    for _ in range(4):
        assert _get(product, dashboard)[0] == 200
    web_log = product.log("web")
    assert web_log.count("WARNING config.outage: web: PostgreSQL unavailable") == 1, web_log
    assert web_log.count("web: recovered after") == 1, web_log
    assert "Traceback" not in web_log
