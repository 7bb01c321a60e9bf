"""Real daphne + pulse processes for browser tests, and the HTTP calls a bot platform makes."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection
from playwright.sync_api import Page

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
    """daphne and pulse as real processes on the test database and this run's Redis prefix, or on
    the servers given (the fault suite's private ones); with `logs`, each process's output goes
    to `<logs>/<name>.log` instead of nowhere."""

    def __init__(
        self,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        logs: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url or database_url_of_tests(),
            "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
            "STATIC_MANIFEST": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
        if redis_url:
            self.env["REDIS_URL"] = redis_url
            self.env.pop("BOTFLOW_EMBEDDED", None)  # both servers are given: start no embedded one
        self.logs = logs
        self.web = self.pulse = None

    def _output(self, name: str):
        if self.logs is None:
            return subprocess.DEVNULL
        return (self.logs / f"{name}.log").open("ab")

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        output = self._output(name)
        try:
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT
            )
        finally:
            if output is not subprocess.DEVNULL:
                output.close()  # the child holds its own copy

    def start_web(self) -> None:
        daphne = str(Path(sys.executable).parent / "daphne")
        self.web = self._spawn(
            "web", [daphne, "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"]
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers (a dependency may be degraded)
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("daphne did not start")

    def stop_web(self) -> None:
        _stop(self.web)

    def start_pulse(self) -> None:
        self.pulse = self._spawn("pulse", [sys.executable, "manage.py", "pulse"])

    def stop_pulse(self) -> None:
        """SIGKILL, as a crash would: no frame and no heartbeat from here on."""
        self.pulse.kill()
        self.pulse.wait()

    def start(self) -> None:
        self.start_web()
        self.start_pulse()

    def stop(self) -> None:
        for proc in (self.web, self.pulse):
            if proc and proc.poll() is None:
                _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL: daphne may wait ~10 s for open WebSockets' applications to end."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post_events(servers: Servers, key: str, events: list[dict]) -> None:
    """Send events through the HTTP API, as a bot platform does; all must be accepted."""
    post_events_to(servers.url, key, events)


def post_events_to(url: str, key: str, events: list[dict], timeout: float = 10) -> None:
    """`post_events` to the web process at `url` (e.g. one of several behind a balancer)."""
    request = urllib.request.Request(
        f"{url}/api/v1/events",
        data=orjson.dumps({"events": events}),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = orjson.loads(response.read())
    assert body["accepted"] == len(events), body


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
    post_events(servers, key, events)


def sign_in_at(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-botflow-123")
    page.get_by_role("button", name="Sign in").click()
