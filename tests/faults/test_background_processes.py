"""The other long-running processes — the Celery worker, beat (django-celery-beat's database
scheduler) and the simulator — outlive a PostgreSQL restart: none exits, the simulator's events
flow again by themselves, and each says so once, not a traceback per attempt."""

import sys
import time

import pytest

from tests.e2e.live_servers import _stop
from tests.faults.clients import wait_until

pytestmark = pytest.mark.timeout(150)


def test_the_worker_beat_and_simulator_outlive_a_postgres_restart(product, tmp_path):
    web = product.servers
    celery = [sys.executable, "-m", "celery", "-A", "config"]
    children = {
        "worker": web._spawn(
            "worker",
            [
                *celery,
                "worker",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
        ),
        "beat": web._spawn(
            "beat",
            [*celery, "beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule")],
        ),
        "simulator": web._spawn(
            "simulator",
            [
                sys.executable,
                "manage.py",
                "simulate",
                "--org",
                product.slug,
                "--rate",
                "20",
                "--url",
                web.url,
                "--key",
                product.key,
            ],
        ),
    }
    try:
        wait_until(
            lambda: product.stored_messages()[0] > 20,
            30,
            message="the simulator's events were not stored",
        )
        time.sleep(3)  # beat has read its schedule, the worker is consuming
        product.pg.stop("fast")
        time.sleep(6)
        product.pg.start()
        after_restart = product.stored_messages()[0]
        wait_until(
            lambda: product.stored_messages()[0] > after_restart + 20,
            15,
            message="the simulator's events did not flow again after the restart",
        )
        time.sleep(5)  # beat's next ticks, the worker's next heartbeats, on the new server
        assert {name: proc.poll() for name, proc in children.items()} == dict.fromkeys(children)
    finally:
        for proc in children.values():
            _stop(proc)
    simulator_log = product.log("simulator")
    assert simulator_log.count("WARNING botflow.simulate") == 1, simulator_log
    assert "recovered after" in simulator_log
    beat_log = product.log("beat")
    assert beat_log.count("WARNING/MainProcess] beat: PostgreSQL unavailable") == 1, beat_log
    assert "beat: recovered after" in beat_log
    for name in children:
        assert "Traceback" not in product.log(name), product.log(name)
