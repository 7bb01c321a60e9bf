"""RabbitMQ for the broker tests: the machine's shared server and a private one that may restart.

The shared server (127.0.0.1:5672, guest/guest, vhost "/") is used by every test run and session
on the machine: a run uses queues of its own prefix (CELERY_QUEUE_PREFIX) and deletes them after,
and never stops the server. A test that restarts RabbitMQ starts a `rabbitmq-server` of its own
on free ports, from a temporary directory (its own node name, Erlang cookie, database and logs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import kombu
import orjson
from django.conf import settings
from kombu.exceptions import OperationalError

from tests.e2e.live_servers import ROOT, database_url_of_tests, free_port

SHARED_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
RABBITMQ_SERVER = Path(os.environ.get("RABBITMQ_SERVER", "/usr/lib/rabbitmq/bin/rabbitmq-server"))


def unreachable(url: str) -> str:
    """Why RabbitMQ at `url` cannot be used ("" when it answers)."""
    try:
        with kombu.Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0)
    except (OperationalError, OSError) as exc:
        return f"{kombu.Connection(url).as_uri()}: {exc}"
    return ""


@dataclass
class Broker:
    """The environment that puts the product's processes on one RabbitMQ, with one queue prefix."""

    url: str
    prefix: str
    export_dir: Path

    @classmethod
    def new(cls, url: str, export_dir: Path) -> Broker:
        return cls(url=url, prefix=f"bftest-{uuid.uuid4().hex[:8]}.", export_dir=export_dir)

    def queue(self, name: str) -> str:
        return self.prefix + name

    def env(self) -> dict[str, str]:
        return {
            "CELERY_BROKER_URL": self.url,
            "CELERY_QUEUE_PREFIX": self.prefix,
            "EXPORT_DIR": str(self.export_dir),
        }

    def shell(self, code: str, timeout: float = 60):
        """Run `code` in `manage.py shell` on this broker (configured by environment only, as a
        web process would be); returns the JSON its last output line holds."""
        env = {
            **os.environ,
            "DATABASE_URL": database_url_of_tests(),
            "REDIS_URL": settings.REDIS_URL,
            "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
            "DB_POOL": "false",
            **self.env(),
        }
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py shell failed:\n{done.stderr[-3000:]}")
        return orjson.loads(done.stdout.strip().splitlines()[-1])

    def depth(self, name: str) -> tuple[int, int]:
        """(messages ready, consumers) of this run's queue `name`; (0, 0) when not declared."""
        with kombu.Connection(self.url, connect_timeout=3) as conn:
            try:
                ok = conn.channel().queue_declare(queue=self.queue(name), passive=True)
            except conn.channel_errors:
                return (0, 0)
            return (ok.message_count, ok.consumer_count)

    def delete_queues(self) -> None:
        """Remove this run's queues and exchanges (on the shared server: leave nothing behind)."""
        with kombu.Connection(self.url, connect_timeout=3) as conn:
            for name in settings.CELERY_QUEUE_NAMES:
                for delete in ("queue_delete", "exchange_delete"):
                    channel = conn.channel()
                    with contextlib.suppress(*conn.channel_errors):
                        getattr(channel, delete)(self.queue(name))
                        channel.close()


class PrivateRabbitMQ:
    """A rabbitmq-server of the test's own on free ports; restart() keeps its database (durable
    queues and persistent messages survive it, as on a production broker's restart).

    It registers its node with the machine's epmd (the shared RabbitMQ keeps one running); the
    registration ends with the node."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="botflow-rabbitmq-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"botflow-test-{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.proc: subprocess.Popen | None = None
        (self.root / "home").mkdir()
        (self.root / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        (self.root / "enabled_plugins").write_text("[].\n")  # no management plugin: no more ports

    @staticmethod
    def available() -> str:
        """Why this machine cannot run one ("" when it can)."""
        if not RABBITMQ_SERVER.exists():
            return f"no {RABBITMQ_SERVER} (apt-get install rabbitmq-server)"
        return ""

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        root = self.root
        return {
            **env,
            "HOME": str(root / "home"),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),  # not the machine's
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(root / "plugins"),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_PID_FILE": str(root / "rabbitmq.pid"),
        }

    def start(self, timeout: float = 60) -> float:
        """Start it and wait until it takes AMQP connections; returns the seconds that took."""
        began = time.monotonic()
        with open(self.root / "server.out", "ab") as out:
            self.proc = subprocess.Popen(
                [str(RABBITMQ_SERVER)],
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the shell, beam and its helpers: one process group
            )
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server exited with {self.proc.returncode}: {self.log()}"
                )
            if not unreachable(self.url):
                return time.monotonic() - began
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"rabbitmq-server did not take connections within {timeout} s")

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout: float = 30) -> None:
        """A clean shutdown (SIGTERM: what `systemctl restart` does): clients are disconnected."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.poll()  # reaps the shell, so an exited group reads as gone
            if not self._group_alive():
                break
            time.sleep(0.1)
        self.kill()

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, *, crash: bool = False) -> float:
        """Stop it cleanly (or SIGKILL it: a crash) and start it again on the same database;
        returns the seconds the start took."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

    def log(self) -> str:
        return (self.root / "server.out").read_text(errors="replace")[-2000:]

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
