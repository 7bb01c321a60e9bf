"""Benchmark: event-to-screen latency of the live dashboard for N open sockets.

What it starts: a scratch database `botflow_bench_live` (created, migrated, dropped), one org with a
bot, a signed-in user and an ingest key; one `daphne` web process and one `pulse` process on the
configured Redis (private key prefix). It opens N real WebSocket clients to the org's dashboard
socket, ingests 200 events/s through the HTTP API in batches of 20 every 100 ms for a fixed time,
and prints: event-to-client latency (ingest request sent -> first frame received after it)
p50/p95/p99, frames delivered per second, clients dropped, and the web process's CPU.

Run:  make bench-live     (or: python -m config.launcher run -- python bench/live.py --clients 1000)
Targets (issue 4): p99 <= 250 ms at 1,000 clients with no drops.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import websockets
from scratch import free_port, scratch_database, start, start_web, stop

BENCH_DB = "botflow_bench_live"


def setup(scratch) -> tuple[str, str]:
    script = (
        "from django.test import Client\n"
        "from django.contrib.auth import get_user_model\n"
        "from analytics.models import Organization, Bot, Membership\n"
        "from analytics.services.api_keys import api_key_create\n"
        "org = Organization.objects.create(slug='bench', name='Bench')\n"
        "Bot.objects.create(organization=org, slug='support-bot', name='Support', channel='web')\n"
        "user = get_user_model().objects.create_user('viewer', password='pw-bench-123')\n"
        "Membership.objects.create(organization=org, user=user, role='viewer')\n"
        "c = Client(); c.force_login(user)\n"
        "print(c.cookies['sessionid'].value)\n"
        "print(api_key_create(organization=org, name='bench', scopes='ingest').secret)\n"
    )
    out = scratch.manage(
        "shell", "-v", "0", "-c", script, capture_output=True, text=True
    ).stdout.split()
    return out[-2], out[-1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_loop(port: int, key: str, deadline: float, sent: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    n = 0
    while time.time() < deadline:
        started = time.time()
        events = [
            {
                "id": str(uuid.uuid4()),
                "type": "message",
                "bot": "support-bot",
                "conversation": f"c{n % 50}",
                "direction": "outbound",
                "text": "ok",
                "response_time_ms": 500 + n % 700,
                "outcome": "success",
            }
            for _ in range(20)
        ]
        n += 1
        conn.request(
            "POST", "/api/v1/events", body=orjson.dumps({"events": events}), headers=headers
        )
        conn.getresponse().read()
        sent.append(started)
        time.sleep(max(0.0, 0.1 - (time.time() - started)))


async def run_clients(port: int, session: str, n: int, seconds: float, sent: list[float]) -> dict:
    latencies: list[float] = []
    frames = 0
    dropped = 0
    url = f"ws://127.0.0.1:{port}/ws/o/bench/live/"
    headers = {"Cookie": f"sessionid={session}", "Origin": f"http://127.0.0.1:{port}"}

    async def one(stop: asyncio.Event):
        nonlocal frames, dropped
        seen = 0
        try:
            async with websockets.connect(
                url, additional_headers=headers, max_size=None, open_timeout=60
            ) as ws:
                while not stop.is_set():
                    try:
                        await asyncio.wait_for(ws.recv(), timeout=0.5)
                    except TimeoutError:
                        continue
                    now = time.time()
                    frames += 1
                    while seen < len(sent) and sent[seen] < now:
                        latencies.append(now - sent[seen])
                        seen += 1
        except (websockets.exceptions.WebSocketException, OSError, TimeoutError):
            dropped += 1

    stop = asyncio.Event()
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(stop)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # a connect burst, but not a single instant
    await asyncio.sleep(2)  # all connected and subscribed
    sent.clear()
    started = time.time()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    return {
        "latencies": latencies,
        "frames": frames,
        "dropped": dropped,
        "elapsed": time.time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()

    with scratch_database(BENCH_DB) as scratch:
        scratch.env.update(
            {
                "LIVE_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:6]}",
                "INGEST_RATE_LIMIT": "100000",
                "LOG_LEVEL": "WARNING",
                "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            }
        )
        session, key = setup(scratch)
        port = free_port()
        web = start_web(scratch, port)
        pulse = start(scratch, sys.executable, "manage.py", "pulse")
        rows = []
        try:
            time.sleep(3)  # pulse imports Django and subscribes
            for n in args.clients:
                sent: list[float] = []
                deadline = time.time() + args.seconds + 2.5
                feeder = threading.Thread(target=ingest_loop, args=(port, key, deadline, sent))
                cpu_before = cpu_seconds(web.pid)
                feeder.start()
                result = asyncio.run(run_clients(port, session, n, args.seconds, sent))
                feeder.join()
                cpu = (cpu_seconds(web.pid) - cpu_before) / (args.seconds + 2.5)
                lat = sorted(result["latencies"]) or [float("nan")]
                q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
                rows.append(
                    (
                        n,
                        q[49],
                        q[94],
                        q[98],
                        result["frames"] / result["elapsed"],
                        result["dropped"],
                        cpu,
                    )
                )
        finally:
            stop(web, pulse)

    print(
        f"\nlive benchmark · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · {os.cpu_count()} cores · "
        f"1 daphne + 1 pulse · 200 events/s ingested · {args.seconds:g} s per row"
    )
    print("| clients | p50 ms | p95 ms | p99 ms | frames/s delivered | dropped | web CPU |")
    print("|---|---|---|---|---|---|---|")
    for n, p50, p95, p99, fps, dropped, cpu in rows:
        print(
            f"| {n:,} | {p50 * 1000:.0f} | {p95 * 1000:.0f} | {p99 * 1000:.0f} | {fps:,.0f} | {dropped} | {cpu:.0%} |"
        )


if __name__ == "__main__":
    main()
