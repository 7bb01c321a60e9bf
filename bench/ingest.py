"""Benchmark: end-to-end ingestion through the real web process (target >= 20,000 events/s).

What it starts: a scratch database `botflow_bench_ingest` on the configured PostgreSQL (created,
migrated, dropped at the end), one org with bots and an ingest key, and `daphne` web process(es)
on free ports, all against the configured Redis (under a private key prefix). It pre-encodes
message-heavy batches of 500 events (per batch: 10 conversation.started, 480 messages, 10
conversation.ended), then concurrent keep-alive clients POST them for a fixed time. It prints
events/s accepted end to end, p50/p95/p99 request latency, the raw PostgreSQL COPY rate into a
copy of the message table measured in the same run, their ratio, and whether any accepted event
is missing from the database.

Run:  make bench-ingest     (or: python -m config.launcher run -- python bench/ingest.py)
      options: --seconds 20 --clients 4 --web 2 --batch 500 (web = daphne processes: one per core)
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime

import orjson
from scratch import free_port, raw_copy_rate, scratch_database, start_web, stop

BENCH_DB = "botflow_bench_ingest"


def make_batches(count: int, size: int) -> list[tuple[bytes, int]]:
    """(body, messages in it) for `count` batches of `size` events with fresh ids."""
    now = datetime.now(UTC).isoformat()
    conversations = 10
    per_conv = (size - 2 * conversations) // conversations
    batches = []
    for b in range(count):
        events = []
        for c in range(conversations):
            conv = f"bench-{b}-{c}"
            bot = ("support-bot", "sales-bot")[c % 2]
            events.append(
                {
                    "id": str(uuid.uuid4()),
                    "type": "conversation.started",
                    "bot": bot,
                    "conversation": conv,
                    "customer": f"Customer {c}",
                    "channel": "web",
                }
            )
            for m in range(per_conv):
                if m % 2 == 0:
                    events.append(
                        {
                            "id": str(uuid.uuid4()),
                            "type": "message",
                            "bot": bot,
                            "conversation": conv,
                            "direction": "inbound",
                            "timestamp": now,
                            "text": "Can I move my appointment to Thursday afternoon?",
                        }
                    )
                else:
                    events.append(
                        {
                            "id": str(uuid.uuid4()),
                            "type": "message",
                            "bot": bot,
                            "conversation": conv,
                            "direction": "outbound",
                            "timestamp": now,
                            "text": "Sure - Thursday at 15:00 is free. Shall I book it?",
                            "response_time_ms": 400 + (m * 37) % 2000,
                            "outcome": "success",
                            "tokens": 230,
                            "cost_usd": 0.000575,
                            "kb_hit": True,
                        }
                    )
            events.append(
                {
                    "id": str(uuid.uuid4()),
                    "type": "conversation.ended",
                    "bot": bot,
                    "conversation": conv,
                    "status": "resolved",
                    "csat": 5,
                }
            )
        batches.append((orjson.dumps({"events": events}), conversations * per_conv))
    return batches


def setup_org(scratch) -> str:
    """Create the org, bots and key in the scratch database; return the key."""
    script = (
        "from analytics.models import Organization, Bot\n"
        "from analytics.services.api_keys import api_key_create\n"
        "org = Organization.objects.create(slug='bench', name='Bench')\n"
        "Bot.objects.create(organization=org, slug='support-bot', name='Support', channel='web')\n"
        "Bot.objects.create(organization=org, slug='sales-bot', name='Sales', channel='web')\n"
        "print(api_key_create(organization=org, name='bench', scopes='ingest').secret)\n"
    )
    out = scratch.manage("shell", "-v", "0", "-c", script, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def new_totals() -> dict:
    return {"latencies": [], "accepted": 0, "messages": 0, "errors": 0, "finished_at": 0.0}


def client(port: int, key: str, batches, deadline: float, out: dict, lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies, accepted, messages, errors = [], 0, 0, 0
    for body, batch_messages in batches:
        if time.perf_counter() >= deadline:
            break
        started = time.perf_counter()
        conn.request("POST", "/api/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status == 200:
            result = orjson.loads(payload)
            accepted += result["accepted"]
            if result["accepted"] == 500:
                messages += batch_messages
        else:
            errors += 1
    with lock:
        out["latencies"] += latencies
        out["accepted"] += accepted
        out["messages"] += messages
        out["errors"] += errors
        out["finished_at"] = max(out["finished_at"], time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--web", type=int, default=2, help="daphne processes (clients spread over them)"
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--max-rate", type=int, default=40_000, help="pre-generated events per second"
    )
    args = parser.parse_args()

    with scratch_database(BENCH_DB) as scratch:
        scratch.env.update(
            {
                "LIVE_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:6]}",
                "INGEST_RATE_LIMIT": "1000000",
                "LOG_LEVEL": "WARNING",
            }
        )
        key = setup_org(scratch)
        count = int(args.max_rate * args.seconds / args.batch) + args.clients
        print(f"pre-encoding {count:,} batches of {args.batch} events ...", flush=True)
        batches = make_batches(count, args.batch)
        ports = [free_port() for _ in range(args.web)]
        webs = []
        try:
            webs = [start_web(scratch, port) for port in ports]
            # warm up each process (imports, connections) outside the measured window
            warm = make_batches(args.web * 2, args.batch)
            for i, port in enumerate(ports):
                client(
                    port,
                    key,
                    warm[2 * i : 2 * i + 2],
                    time.perf_counter() + 30,
                    new_totals(),
                    threading.Lock(),
                )
            out, lock = new_totals(), threading.Lock()
            started = time.perf_counter()
            deadline = started + args.seconds
            threads = [
                threading.Thread(
                    target=client,
                    args=(
                        ports[i % len(ports)],
                        key,
                        batches[i :: args.clients],
                        deadline,
                        out,
                        lock,
                    ),
                )
                for i in range(args.clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = out["finished_at"] - started
        finally:
            stop(*webs)
        with scratch.connect() as conn:
            stored = conn.execute("SELECT count(*) FROM analytics_message").fetchone()[0]
            copy_rate = raw_copy_rate(conn)

    lat = sorted(out["latencies"])
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    rate = out["accepted"] / elapsed
    warm_messages = sum(m for _, m in warm)
    lost = out["messages"] + warm_messages - stored
    print()
    print(
        f"ingest benchmark · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · {os.cpu_count()} cores"
        f" · Python {platform.python_version()} · {args.web} daphne · {args.clients} clients · batch {args.batch}"
    )
    print(
        "| seconds | requests | events accepted | events/s | p50 ms | p95 ms | p99 ms | errors | "
        "raw COPY rows/s | ratio | lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {elapsed:.1f} | {len(lat):,} | {out['accepted']:,} | {rate:,.0f} | {q[49] * 1000:.0f} | "
        f"{q[94] * 1000:.0f} | {q[98] * 1000:.0f} | {out['errors']} | {copy_rate:,.0f} | {rate / copy_rate:.0%} | "
        f"{lost} |"
    )
    verdict = rate >= 20_000 and q[94] <= 0.25 and lost == 0
    print(f"target: >= 20,000 events/s, p95 <= 250 ms, 0 lost -> {'PASS' if verdict else 'FAIL'}")


if __name__ == "__main__":
    main()
