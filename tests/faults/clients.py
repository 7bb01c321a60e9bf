"""The clients a fault test watches the product through: a bot platform posting events at a steady
rate (retrying what the API refuses with 503, as the API asks) and an open dashboard socket that
reconnects as the page does."""

from __future__ import annotations

import http.client
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import orjson
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.celery_worker import wait_for

MESSAGES_HOUR = re.compile(
    r'id="metric-messages-hour">\s*<span class="label">[^<]*</span>\s*<span class="value">([\d,]+)<'
)


class Ports:
    """The servers behind one address, as a client that fails over sees them: it keeps to one
    while it answers and moves to the next when a connection cannot be made."""

    def __init__(self, ports: int | tuple[int, ...]) -> None:
        self.ports = (ports,) if isinstance(ports, int) else tuple(ports)
        self.index = 0

    @property
    def current(self) -> int:
        return self.ports[self.index]

    def next(self) -> int:
        self.index = (self.index + 1) % len(self.ports)
        return self.current


class Ingestor(threading.Thread):
    """POSTs `batch` message events every `every` seconds until stopped. A refused batch (503,
    429, a dropped connection) is sent again with the same ids until the API takes it, so every
    event it made is eventually either accepted once or still pending when it stops."""

    def __init__(
        self, port: int | tuple[int, ...], key: str, *, batch: int = 20, every: float = 0.05
    ) -> None:
        super().__init__(daemon=True)
        self.ports = Ports(port)
        self.key, self.batch, self.every = key, batch, every
        self.stopping = threading.Event()
        self.accepted = 0
        self.duplicates = 0
        self.statuses: Counter[int | str] = Counter()
        self.refused_since: float | None = None
        self.n = 0

    def _events(self) -> list[dict]:
        events = []
        for _ in range(self.batch):
            event_id = str(uuid.uuid4())
            events.append(
                {
                    "id": event_id,
                    "type": "message",
                    "bot": "support-bot",
                    "conversation": f"fault-{self.n % 40}",
                    "direction": "inbound",
                    "text": event_id,  # one stored row per event id: duplicates would show
                }
            )
            self.n += 1
        return events

    def _post(self, conn: http.client.HTTPConnection, body: bytes) -> dict | None:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        conn.request("POST", "/api/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        self.statuses[response.status] += 1
        return orjson.loads(data) if response.status == 200 else None

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports.current, timeout=15)
        while not self.stopping.is_set():
            body = orjson.dumps({"events": self._events()})
            while not self.stopping.is_set():
                try:
                    result = self._post(conn, body)
                except (OSError, http.client.HTTPException) as exc:
                    self.statuses[exc.__class__.__name__] += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.ports.next(), timeout=15)
                    result = None
                if result is not None:
                    # Every id is new, so a duplicate is this batch's own earlier attempt, stored
                    # before its answer was lost (a server killed after the commit): accepted too.
                    self.accepted += result["accepted"] + result["duplicates"]
                    self.duplicates += result["duplicates"]
                    break
                time.sleep(0.1)  # refused: the same batch again shortly
            time.sleep(self.every)
        conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the ingest client did not stop"


@dataclass
class Frame:
    at: float
    text: str


class LiveSocket(threading.Thread):
    """A dashboard's socket (/ws/o/<org>/live/ with the viewer's session cookie). Like the page,
    it reconnects after a close (4013 while Redis is down) or a refused connect, every 0.5 s."""

    def __init__(self, port: int | tuple[int, ...], org: str, session: str) -> None:
        super().__init__(daemon=True)
        self.ports = Ports(port)
        self.org, self.session = org, session
        self.frames: list[Frame] = []
        self.closes: list[tuple[float, int | None]] = []  # (when, close code)
        self.connects: list[float] = []
        self.connected_to: list[int] = []  # the port of each connect
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            port = self.ports.current
            url = f"ws://127.0.0.1:{port}/ws/o/{self.org}/live/"
            headers = {"Cookie": f"sessionid={self.session}", "Origin": f"http://127.0.0.1:{port}"}
            try:
                with connect(url, additional_headers=headers, open_timeout=5, max_size=None) as ws:
                    self.connects.append(time.monotonic())
                    self.connected_to.append(port)
                    while not self.stopping.is_set():
                        try:
                            text = ws.recv(timeout=0.5)
                        except TimeoutError:
                            continue
                        self.frames.append(Frame(time.monotonic(), text))
            except ConnectionClosed as exc:
                self.closes.append((time.monotonic(), exc.rcvd.code if exc.rcvd else None))
            except (InvalidStatus, OSError, TimeoutError):
                self.closes.append((time.monotonic(), None))
                self.ports.next()  # refused or unreachable: the next try goes to another server
            if not self.stopping.is_set():
                time.sleep(0.5)

    def frames_after(self, moment: float) -> list[Frame]:
        return [f for f in self.frames if f.at > moment]

    def last_messages_hour(self) -> int | None:
        """The "Messages / hour" card as the last frame that carried it showed it."""
        for frame in reversed(self.frames):
            match = MESSAGES_HOUR.search(frame.text)
            if match:
                return int(match.group(1).replace(",", ""))
        return None

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


def wait_until(condition, timeout: float, every: float = 0.1, message: str = ""):
    """tests.celery_worker.wait_for, polling faster: the fault tests time recoveries in seconds."""
    return wait_for(condition, timeout, every, message)
