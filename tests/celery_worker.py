"""A real `celery -A config worker` subprocess on the test database, for tests that need one.

Tests using it must commit their data (`django_db(transaction=True)`): the worker is another
process with its own connections. `env` adds to the worker's environment, e.g. CELERY_BROKER_URL
and CELERY_QUEUE_PREFIX for a worker on RabbitMQ (tests/scale/test_rabbitmq.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from celery import Celery
from django.conf import settings
from django.db import connection
from kombu.exceptions import OperationalError

from config.celery import app

ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = db["HOST"] or "127.0.0.1"
    if host.startswith("/"):
        return f"postgres://{auth}@/{db['NAME']}?host={host}"
    return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    def __init__(self, visibility_timeout: int = 900, env: dict[str, str] | None = None) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@localhost"
        extra = env or {}
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
            "CELERY_VISIBILITY_TIMEOUT": str(visibility_timeout),
            "DB_POOL": "false",
            **extra,
        }
        prefix = env.get("CELERY_QUEUE_PREFIX", settings.CELERY_QUEUE_PREFIX)
        queues = ",".join(prefix + name for name in ("default", "followups", "rollups"))
        # Pinged through the broker the worker uses (this process's app may be on another one).
        self.control = app
        if "CELERY_BROKER_URL" in extra:
            self.control = Celery("probe", broker=extra["CELERY_BROKER_URL"], set_as_current=False)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--concurrency",
                "1",
                "-Q",
                queues,
                "-n",
                self.name,
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        try:
            self.wait_until_it_answers(60)
        except RuntimeError:
            self.kill()
            raise

    def answers(self, timeout: float = 0.5) -> bool:
        """The worker answers a ping through its broker (it is connected and consuming)."""
        try:
            return bool(self.control.control.ping(destination=[self.name], timeout=timeout))
        except (OperationalError, OSError):  # the broker itself is down
            return False

    def wait_until_it_answers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.proc.returncode}")
            if self.answers():
                return
        raise RuntimeError(f"celery worker did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes (its own process group)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_control()

    def _close_control(self) -> None:
        if self.control is not app:
            self.control.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_control()


@contextmanager
def celery_worker(**kwargs):
    if not kwargs.get("env"):  # a worker on another broker: its test empties its own queues
        app.control.purge()  # tasks left by earlier runs would only slow this one down
    worker = Worker(**kwargs)
    try:
        yield worker
    finally:
        worker.stop()


def wait_for(condition, timeout: float = 60, every: float = 0.2, message: str = ""):
    """Poll `condition` until it returns something truthy (returned); fail with `message`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(message or f"condition not met within {timeout} s")
