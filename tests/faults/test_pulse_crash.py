"""pulse killed (SIGKILL) while events arrive and a dashboard is open, then started again: the
dashboard moves again and its final figure is what PostgreSQL holds — the events that arrived
while nothing pushed are not lost on the way to the page. (That the page says Stale meanwhile, and
Live again after, is checked in a real browser: tests/e2e/test_staleness.py.)"""

import time

import pytest

from tests.faults.clients import Ingestor, LiveSocket, wait_until

pytestmark = pytest.mark.timeout(120)


def test_a_killed_pulse_restarted_loses_no_figure(product):
    web = product.servers
    socket = LiveSocket(web.port, product.slug, product.session)
    socket.start()
    ingest = Ingestor(web.port, product.key)
    try:
        wait_until(lambda: socket.connects, 15, message="the dashboard socket did not connect")
        ingest.start()
        wait_until(
            lambda: (socket.last_messages_hour() or 0) > 0,
            20,
            message="no live frame before the crash",
        )
        web.stop_pulse()  # SIGKILL
        killed = time.monotonic()
        time.sleep(3)
        accepted_while_down = ingest.accepted
        assert accepted_while_down > 0
        assert not socket.frames_after(killed + 0.5)  # nothing pushes while pulse is dead
        web.start_pulse()
        restarted = time.monotonic()
        wait_until(
            lambda: socket.frames_after(restarted),
            10,
            message="no live frame after pulse started again",
        )
        time.sleep(1)
    finally:
        ingest.stop()

    rows, distinct = product.stored_messages()
    assert rows == distinct == ingest.accepted
    wait_until(
        lambda: socket.last_messages_hour() == rows,
        10,
        message=f"the card shows {socket.last_messages_hour()}, PostgreSQL holds {rows}",
    )
    assert socket.connects == socket.connects[:1]  # the socket itself never dropped
    socket.stop()
    assert product.still_running() == {"web": None, "pulse": None}
