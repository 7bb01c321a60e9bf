"""Benchmark: the read side (issue 6) on 10,000,000 messages / ~1,000,000 conversations, 30 days.

Run:  make bench-read   (flock /tmp/botflow-bench.lock … python bench/read_paths.py [--requests 30])
Database: bench/bigdata.py's `ensure_bigdata()` (built once, reused); `--reuse` takes whatever
that database holds now without building it (for trying the script on a smaller seed).

One daphne process serves the product on the database. The script signs a member of the largest
org (`bench-00`) in, makes a read API key, and requests each path `--requests` times one after
another on a keep-alive connection after warm-ups, printing p50/p95/max time to the last byte on
loopback (server time plus a loopback hop). Then it exports the org's conversations of the last
30 days as CSV over HTTP (rows/s, the web process's peak RSS sampled every 20 ms), and streams
every conversation of the database (~1M rows) through the same export code in a process of its
own (rows/s, peak RSS).
Targets: explorer 30 days p95 <= 150 ms, with full-text search <= 250 ms, bot page <= 100 ms,
each API endpoint <= 100 ms; CSV >= 50,000 rows/s with the serving process <= 150 MB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from scratch import ROOT, free_port, start_web, stop  # noqa: E402

LIVE_PREFIX = "bfbenchread"
ORG = "bench-00"
USER = "bench-read"
TARGETS = {"explorer": 150, "search": 250, "bot": 100, "api": 100}


def database(reuse: bool):
    from bigdata import DB_NAME, BigData, _meta, ensure_bigdata

    if not reuse:
        return ensure_bigdata()
    scratch = BigData(DB_NAME)
    with scratch.connect() as conn:
        scratch.meta = _meta(conn) or {}
    return scratch


def credentials(env: dict) -> dict:
    """(In a child process on the bench database.) A member's session cookie and a read key."""
    code = f"""
import json
from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from analytics.models import ApiKey, Bot, Campaign, Conversation, Membership, Organization
from analytics.services.api_keys import api_key_create
org = Organization.objects.get(slug="{ORG}")
user, _ = get_user_model().objects.get_or_create(username="{USER}")
Membership.objects.get_or_create(organization=org, user=user, defaults={{"role": "analyst"}})
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
ApiKey.objects.for_org(org).filter(name="bench-read").delete()
key = api_key_create(organization=org, name="bench-read", scopes="read").secret
bot = Bot.objects.for_org(org).order_by("pk").first()
campaign = Campaign.objects.for_org(org).order_by("pk").first()
conv = Conversation.objects.for_org(org).order_by("-started_at").first()
print(json.dumps({{"session": session.session_key, "key": key, "bot": bot.slug,
                  "campaign": campaign.slug if campaign else None, "conversation": conv.pk}}))
"""
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def timed_get(conn: http.client.HTTPConnection, path: str, headers: dict) -> tuple[float, int, int]:
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    size = len(response.read())
    return (time.perf_counter() - started) * 1000, response.status, size


def measure(port: int, path: str, headers: dict, requests: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(3):
        _ms, status, _size = timed_get(conn, path, headers)
        if status != 200:
            raise SystemExit(f"{path} answered {status}")
    times = sorted(timed_get(conn, path, headers)[0] for _ in range(requests))
    conn.close()
    return {
        "p50": statistics.median(times),
        "p95": times[max(0, round(0.95 * len(times)) - 1)],
        "max": times[-1],
    }


class PeakRss:
    """Samples a process's resident memory every 20 ms while in use."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()

    def __enter__(self):
        self.before = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def export_over_http(port: int, pid: int, cookie: dict) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    with PeakRss(pid) as rss:
        started = time.perf_counter()
        conn.request("GET", f"/o/{ORG}/conversations/export.csv?period=30d", headers=cookie)
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"export answered {response.status} {response.getheader('Location')}")
        lines, size = 0, 0
        while chunk := response.read(65536):
            lines += chunk.count(b"\n")
            size += len(chunk)
        seconds = time.perf_counter() - started
    return {
        "rows": lines - 1,
        "seconds": seconds,
        "bytes": size,
        "rss_before": rss.before,
        "rss_peak": rss.peak,
    }


def export_in_process() -> None:
    """(In a child process.) Every conversation of the database through conversations_csv()."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from analytics.models import Conversation
    from analytics.services.export import conversations_csv

    proc = psutil.Process()
    before, peak, lines, size = proc.memory_info().rss, 0, 0, 0
    started = time.perf_counter()
    for i, chunk in enumerate(
        conversations_csv(Conversation.objects.order_by("-started_at", "-id"))
    ):
        lines += chunk.count(b"\n")
        size += len(chunk)
        if i % 16 == 0:
            peak = max(peak, proc.memory_info().rss)
    seconds = time.perf_counter() - started
    peak = max(peak, proc.memory_info().rss)
    print(
        json.dumps(
            {
                "rows": lines - 1,
                "seconds": seconds,
                "bytes": size,
                "rss_before": before,
                "rss_peak": peak,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="do not build the database")
    parser.add_argument("--in-process-export", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process_export:
        export_in_process()
        return
    scratch = database(args.reuse)
    env = {
        **scratch.env,
        "LIVE_KEY_PREFIX": LIVE_PREFIX,
        "STATIC_MANIFEST": "false",
        "EXPORT_ASYNC_ROWS": "5000000",
        "LOG_LEVEL": "WARNING",
    }
    scratch.env = env
    meta = getattr(scratch, "meta", {})
    print(
        f"database: {scratch.name}, {meta.get('messages', '?'):,} messages, "
        f"{meta.get('conversations', '?'):,} conversations"
    )
    found = credentials(env)
    cookie = {"Cookie": f"sessionid={found['session']}"}
    bearer = {"Authorization": f"Bearer {found['key']}"}
    bot, campaign = found["bot"], found["campaign"]
    today = datetime.now(UTC).date()
    start_30 = (today - timedelta(days=29)).isoformat()
    paths = [
        (
            "explorer, 30 days, first page",
            f"/o/{ORG}/conversations/?period=30d",
            cookie,
            "explorer",
        ),
        (
            "explorer, 30 days, search 'invoice'",
            f"/o/{ORG}/conversations/?period=30d&q=invoice",
            cookie,
            "search",
        ),
        (
            "explorer, 30 days, search 'parking thursday'",
            f"/o/{ORG}/conversations/?period=30d&q=parking+thursday",
            cookie,
            "search",
        ),
        ("bot page, 30 days", f"/o/{ORG}/bots/{bot}/?period=30d", cookie, "bot"),
        ("GET analytics/realtime", "/api/v1/analytics/realtime", bearer, "api"),
        (
            "GET analytics/response-times 30d",
            "/api/v1/analytics/response-times?period=30d",
            bearer,
            "api",
        ),
        (
            "GET analytics/response-times 30d bot",
            f"/api/v1/analytics/response-times?period=30d&bot={bot}",
            bearer,
            "api",
        ),
        (
            "GET analytics/message-volume 30d",
            "/api/v1/analytics/message-volume?period=30d",
            bearer,
            "api",
        ),
        ("GET bots/", "/api/v1/bots/", bearer, "api"),
        (
            "GET bots/<slug>/performance 30 days",
            f"/api/v1/bots/{bot}/performance?start_date={start_30}",
            bearer,
            "api",
        ),
        (
            "GET bots/<slug>/percentiles 30d",
            f"/api/v1/bots/{bot}/percentiles?period=30d",
            bearer,
            "api",
        ),
        ("GET campaigns/", "/api/v1/campaigns/", bearer, "api"),
        ("GET conversations/ 30 days", f"/api/v1/conversations/?start={start_30}", bearer, "api"),
        (
            "GET conversations/ 30 days, q=invoice",
            f"/api/v1/conversations/?start={start_30}&q=invoice",
            bearer,
            "api",
        ),
        (
            "GET conversations/<id>/",
            f"/api/v1/conversations/{found['conversation']}/",
            bearer,
            "api",
        ),
        ("GET system/health", "/api/v1/system/health", bearer, "api"),
    ]
    if campaign:
        paths.insert(
            12,
            (
                "GET campaigns/<slug>/metrics 30 days",
                f"/api/v1/campaigns/{campaign}/metrics?start_date={start_30}",
                bearer,
                "api",
            ),
        )
        paths.insert(
            4,
            ("campaign page, 30 days", f"/o/{ORG}/campaigns/{campaign}/?period=30d", cookie, "bot"),
        )
    port = free_port()
    web = start_web(scratch, port)
    try:
        print(
            f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
            f"{os.cpu_count()} cores, {args.requests} requests each, one daphne process\n"
        )
        print("| path | p50 ms | p95 ms | max ms | target p95 |")
        print("|---|---:|---:|---:|---:|")
        for label, path, headers, kind in paths:
            r = measure(port, path, headers, args.requests)
            ok = "ok" if r["p95"] <= TARGETS[kind] else "MISSED"
            print(
                f"| {label} | {r['p50']:.1f} | {r['p95']:.1f} | {r['max']:.1f} | "
                f"<= {TARGETS[kind]} ({ok}) |",
                flush=True,
            )
        http_export = export_over_http(port, web.pid, cookie)
    finally:
        stop(web)
    in_process = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--in-process-export"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    print("\n| CSV export | rows | seconds | rows/s | MB | RSS before MB | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, r in (
        (f"HTTP, {ORG}, 30 days (daphne process)", http_export),
        ("in process, every conversation", in_process),
    ):
        print(
            f"| {label} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | "
            f"{r['bytes'] / 1e6:.0f} | {r['rss_before'] / 2**20:.0f} | {r['rss_peak'] / 2**20:.0f} |"
        )


if __name__ == "__main__":
    main()
