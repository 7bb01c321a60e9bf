"""Two web processes behind one address (two ports; clients retry the other one, as behind a
load balancer): one is killed (SIGKILL) while events arrive and dashboards are open on both. Its
clients move to the other within seconds and see the same figures as everyone else, and nothing
the API accepted is lost or doubled."""

import time

import pytest

from tests.e2e.live_servers import Servers
from tests.faults.clients import Ingestor, LiveSocket, wait_until

pytestmark = pytest.mark.timeout(120)


def test_clients_of_a_killed_web_process_move_to_the_other(product, tmp_path):
    first = product.servers
    second = Servers(database_url=product.pg.url, redis_url=product.redis.url, logs=tmp_path)
    second.start_web()
    both = (first.port, second.port)
    try:
        # One dashboard and the ingesting platform on the first, one dashboard on the second.
        moving = LiveSocket(both, product.slug, product.session)
        staying = LiveSocket((second.port, first.port), product.slug, product.session)
        ingest = Ingestor(both, product.key)
        for socket in (moving, staying):
            socket.start()
        try:
            wait_until(
                lambda: moving.connects and staying.connects,
                15,
                message="the dashboard sockets did not connect",
            )
            ingest.start()
            wait_until(
                lambda: (moving.last_messages_hour() or 0) > 0,
                20,
                message="no live frame before the kill",
            )
            first.web.kill()
            first.web.wait()
            killed = time.monotonic()

            wait_until(
                lambda: second.port in moving.connected_to,
                5,
                message="the first server's dashboard did not move to the second",
            )
            wait_until(
                lambda: moving.frames_after(killed),
                5,
                message="the moved dashboard got no frame from the second server",
            )
            accepted = ingest.accepted
            wait_until(
                lambda: ingest.accepted > accepted,
                5,
                message="ingestion did not move to the second server",
            )
            time.sleep(1)
        finally:
            ingest.stop()

        rows, distinct = product.stored_messages()
        assert rows == distinct == ingest.accepted  # a batch resent after the kill is not doubled
        for socket in (moving, staying):
            wait_until(
                lambda s=socket: s.last_messages_hour() == rows,
                10,
                message=f"a card shows {socket.last_messages_hour()}, PostgreSQL {rows}",
            )
        assert staying.connected_to == [second.port]  # the other server's clients never noticed
        for socket in (moving, staying):
            socket.stop()
        assert second.web.poll() is None and product.servers.pulse.poll() is None
    finally:
        second.stop()
