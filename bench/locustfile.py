"""Locust users for the concurrent-user load test (issue 12); bench/load.py prepares and runs it.

Each simulated user is one member of a demo org (`bench/load.py` writes their usernames,
passwords, roles, read API keys and the org's bots and conversations to a JSON file given as
`--bench-data`). It signs in through the real login form (GET for the CSRF token, POST), then,
with 5-15 s of reading between actions, does what a member does: opens the live dashboard
(page + its alert banner), switches the chart period, filters the explorer, opens a transcript
and a bot page, calls the read API with its key and exports a small CSV (the explorer and the
export for analysts and above: a viewer's role allows neither). Users are spread over the web
processes in `--hosts` (user i talks to host i mod n), like a load balancer pinning sessions.

Load shape (`RampShape`), as the product's original k6 plan: half the users (`-u`) for the first
half of the run (`-t`), then all of them; `-r` is the ramp speed in users/s.

    locust -f bench/locustfile.py --headless -u 200 -r 1.7 -t 5m --host http://127.0.0.1:8001 \
        --hosts http://127.0.0.1:8001,http://127.0.0.1:8002 --bench-data .data/bench-load/users.json
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path
from urllib.parse import urlencode

from locust import LoadTestShape, between, events, task
from locust.contrib.fasthttp import FastHttpUser

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
PERIODS = ("24h", "7d", "30d")
SEARCHES = (
    "invoice",
    "thursday",
    "parking",
    "cancel",
    "refund",
)  # words of the demo texts, one not
STATUSES = ("resolved", "unresolved", "escalated", "")
HTMX = {"HX-Request": "true"}  # what htmx sends: the views answer with the fragment it swaps in
ANALYST_ROLES = ("analyst", "admin", "owner")  # viewers may not explore or export

# The user accounts, handed out one per spawned user (filled by the init hook below).
_DATA: dict = {}
_NEXT = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument(
        "--bench-data", default="", help="JSON written by bench/load.py (users, keys, bots)"
    )
    parser.add_argument(
        "--hosts", default="", help="comma-separated base URLs; users are spread over them"
    )


@events.init.add_listener
def _load(environment, **_kwargs) -> None:
    options = environment.parsed_options
    path = getattr(options, "bench_data", "") if options else ""
    if not path:
        return  # imported (e.g. by a test) or run without data: users refuse to start
    _DATA.update(json.loads(Path(path).read_text()))
    hosts = [h.strip().rstrip("/") for h in (options.hosts or "").split(",") if h.strip()]
    _DATA["hosts"] = hosts or [environment.host.rstrip("/")]


class OrgMember(FastHttpUser):
    """A signed-in member of a demo org using the dashboard, explorer, API and export."""

    wait_time = between(5, 15)  # reading the page before the next action

    def on_start(self) -> None:
        users = _DATA.get("users")
        if not users:
            raise RuntimeError("no --bench-data: run this locustfile through bench/load.py")
        i = next(_NEXT)
        if i >= len(users):
            raise RuntimeError(f"more locust users than prepared accounts ({len(users)})")
        self.account = users[i]
        self.client.base_url = _DATA["hosts"][i % len(_DATA["hosts"])]
        org = _DATA["orgs"][self.account["org"]]
        self.base = f"/o/{self.account['org']}"
        self.bots, self.conversations = org["bots"], org["conversations"]
        self.api = {"Authorization": f"Bearer {self.account['key']}"}
        self.sign_in()
        self.open_dashboard()

    def page(self, path: str, name: str, headers: dict | None = None, expect: str = "") -> None:
        """GET that counts as failed unless it answers 200 (a redirect to the login page means
        the session was lost) and, when given, the body contains `expect`."""
        with self.client.get(
            path, name=name, headers=headers, allow_redirects=False, catch_response=True
        ) as response:
            if response.status_code != 200:
                where = response.headers.get("Location", "") if response.headers else ""
                response.failure(f"HTTP {response.status_code} {where}".strip())
            elif expect and expect not in (response.text or ""):
                response.failure(f"answer lacks {expect!r}")

    def sign_in(self) -> None:
        with self.client.get(
            "/accounts/login/", name="sign in: form", catch_response=True
        ) as response:
            found = CSRF_INPUT.search(response.text or "")
            if response.status_code != 200 or not found:
                response.failure(f"HTTP {response.status_code}, no CSRF token")
                return
        body = urlencode(
            {
                "username": self.account["username"],
                "password": self.account["password"],
                "csrfmiddlewaretoken": found.group(1),
                "next": f"{self.base}/",
            }
        )
        with self.client.post(
            "/accounts/login/",
            name="sign in: POST",
            data=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"{self.client.base_url}/accounts/login/",
            },
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"HTTP {response.status_code}: not signed in")

    @task(4)
    def open_dashboard(self) -> None:
        self.page(f"{self.base}/", "dashboard", expect="data-poll-url")
        self.page(f"{self.base}/alerts/banner", "dashboard: alert banner", HTMX)

    @task(3)
    def switch_period(self) -> None:
        period = random.choice(PERIODS)
        self.page(f"{self.base}/charts/period?period={period}", "dashboard: switch period", HTMX)

    @task(3)
    def filter_explorer(self) -> None:
        if self.account["role"] not in ANALYST_ROLES:
            return  # a viewer's role does not allow the explorer (the menu hides it)
        query = {"period": random.choice(PERIODS), "bot": random.choice(self.bots)}
        if status := random.choice(STATUSES):
            query["status"] = status
        name = "explorer: filter"
        if random.random() < 0.3:
            query["q"], name = random.choice(SEARCHES), "explorer: filter + search"
        self.page(f"{self.base}/conversations/?{urlencode(query)}", name, HTMX)

    @task(2)
    def open_transcript(self) -> None:
        conversation = random.choice(self.conversations)
        self.page(f"{self.base}/conversations/{conversation}/", "transcript")

    @task(2)
    def open_bot(self) -> None:
        bot = random.choice(self.bots)
        self.page(f"{self.base}/bots/{bot}/?period={random.choice(PERIODS)}", "bot page")

    @task(3)
    def read_api(self) -> None:
        bot = random.choice(self.bots)
        path, name = random.choice(
            (
                ("/api/v1/analytics/realtime", "api: realtime"),
                (
                    f"/api/v1/analytics/response-times?period={random.choice(PERIODS)}",
                    "api: response-times",
                ),
                ("/api/v1/analytics/message-volume?period=24h", "api: message-volume"),
                ("/api/v1/bots/", "api: bots"),
                (f"/api/v1/bots/{bot}/percentiles?period=7d", "api: bot percentiles"),
                ("/api/v1/conversations/", "api: conversations"),
            )
        )
        self.page(path, name, self.api)

    @task(1)
    def export_csv(self) -> None:
        if self.account["role"] not in ANALYST_ROLES:
            return  # nor exports
        query = urlencode({"period": "24h", "bot": random.choice(self.bots)})
        self.page(f"{self.base}/conversations/export.csv?{query}", "export CSV", expect="\n")


class RampShape(LoadTestShape):
    """Half of `-u` users for the first half of `-t`, then all of them; `-r` users/s while
    ramping (the k6 plan's 100 -> 200 stages, without its ramp-down)."""

    use_common_options = True

    def tick(self):
        options = self.runner.environment.parsed_options
        users, rate = options.num_users or 1, options.spawn_rate or 1
        run_time = options.run_time or 300
        elapsed = self.get_run_time()
        if elapsed >= run_time:
            return None
        return (max(1, users // 2), rate) if elapsed < run_time / 2 else (users, rate)
