"""Benchmark: first server render of the live page /o/<org>/ with 10,000,000 messages stored, and
what a browser transfers on first load (HTML plus every static asset, compressed as served).

Run:  make bench-page   (flock /tmp/botflow-bench.lock … python bench/page.py [--requests 60])
Database: bench/bigdata.py's `ensure_bigdata()` when it exists; otherwise this script's own
`botflow_bench_page` (kept between runs: the first run seeds it with SQL in ~10 minutes, later
runs top it up to the present). Either way the completed hours are rolled up with the product's
rollup service and the live state of the last two hours is rebuilt into Redis (its own key
prefix), as on a running system. Then one daphne process serves the page; the script signs in,
requests the page `--requests` times one after another (after a warm-up) and prints p50/p95/max
time to the last byte on loopback, then fetches every script, stylesheet and icon the page
references with `Accept-Encoding: br, gzip` and counts the bytes on the wire.
Targets (issue 4): p95 <= 100 ms; first load <= 1.5 MB.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from scratch import ROOT, Scratch, free_port, start_web, stop  # noqa: E402

BENCH_DB = "botflow_bench_page"
LIVE_PREFIX = "bfbenchpage"
USER, PASSWORD = "bench-page", "bench-botflow-page"
MESSAGES = 10_000_000
DAYS = 30
PER_CONVERSATION = 10
TARGET_P95_MS, TARGET_BYTES = 100.0, 1_500_000


# --- the database ------------------------------------------------------------------------------


def database(messages: int, name: str = BENCH_DB) -> Scratch:
    """A migrated database holding `messages` messages up to now, rolled up, with live state."""
    # Its own database (one org with its own shape), not bench/bigdata.py's: seeding it there
    # would add 10M messages to the other benchmarks' data.
    scratch = Scratch(name)
    with scratch.connect(scratch.db["NAME"]) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            admin.execute(f"CREATE DATABASE {name}")
    scratch.env = {**scratch.env, "LIVE_KEY_PREFIX": LIVE_PREFIX, "STATIC_MANIFEST": "true"}
    scratch.manage("migrate", "-v", "0")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--prepare", "--messages", str(messages)],
        cwd=ROOT,
        env=scratch.env,
        check=True,
    )
    print(f"database ready in {time.perf_counter() - started:.0f} s")
    return scratch


def prepare(messages: int) -> None:
    """(In a child process, on the bench database.) Seed or top up, roll up, rebuild live state."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.db import connection
    from django.utils import timezone

    from analytics.models import Bot, BotHourlyRollup, Message
    from analytics.services.live import live_rebuild
    from analytics.services.rollup import rollup_build_hourly

    now = timezone.now()
    org = _bench_org()
    newest = (
        Message.objects.for_org(org).order_by("-created_at").values_list("created_at", flat=True)
    )
    newest = newest.first()
    bot_ids = list(Bot.objects.for_org(org).values_list("id", flat=True))
    if newest is None:
        print(f"seeding {messages:,} messages over {DAYS} days (one-off) ...", flush=True)
        _insert_traffic(org, bot_ids, now - timedelta(days=DAYS), now, messages, bulk=True)
    elif now - newest > timedelta(minutes=5):
        rate = messages / (DAYS * 86400)  # keep the same traffic per second
        gap = (now - newest).total_seconds()
        print(f"topping up {gap / 3600:.1f} h of traffic ...", flush=True)
        _insert_traffic(org, bot_ids, newest + timedelta(seconds=1), now, int(rate * gap))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    rolled = set(
        BotHourlyRollup.objects.for_org(org)
        .filter(hour__gte=now - timedelta(days=DAYS + 1))
        .values_list("hour", flat=True)
        .distinct()
    )
    first = (now - timedelta(days=DAYS)).replace(minute=0, second=0, microsecond=0)
    current = now.replace(minute=0, second=0, microsecond=0)
    hours = [first + timedelta(hours=i) for i in range(int((current - first) / timedelta(hours=1)))]
    todo = [h for h in hours if h not in rolled or h >= current - timedelta(hours=2)]
    started = time.perf_counter()
    for hour in todo:
        rollup_build_hourly(org_id=org.pk, hour=hour)
    print(f"rolled up {len(todo)} hours in {time.perf_counter() - started:.0f} s", flush=True)
    live_rebuild(org=org, now=now)
    total = Message.objects.count()
    print(f"{total:,} messages in the database; org {org.slug!r} ready", flush=True)


def _bench_org():
    from django.contrib.auth import get_user_model

    from analytics.models import Bot, Campaign, Membership, Organization, Role

    org, created = Organization.objects.get_or_create(
        slug="acme", defaults={"name": "Acme Dental Group", "timezone": "Europe/Berlin"}
    )
    if created:
        for slug, name, kind, persona, avatar in [
            ("support-bot", "Support Assistant", "chatbot", "", "💬"),
            ("sales-bot", "Sales Assistant", "chatbot", "", "🛒"),
            ("wa-orders", "Order Status", "chatbot", "", "📦"),
            ("faq-bot", "FAQ Bot", "chatbot", "", "❓"),
            ("luna", "Luna", "ai_employee", "Customer Success", "🌙"),
            ("jade", "Jade", "ai_employee", "Sales Specialist", "💎"),
            ("flora", "Flora", "ai_employee", "Receptionist", "🌸"),
            ("dialer", "Outbound Dialer", "voice", "", "📞"),
        ]:
            Bot.objects.create(
                organization=org, slug=slug, name=name, kind=kind, persona=persona, avatar=avatar
            )
        dialer = Bot.objects.get(organization=org, slug="dialer")
        Campaign.objects.create(
            organization=org, slug="winter", name="Winter Renewals", status="active", bot=dialer
        )
    user = get_user_model().objects.filter(username=USER).first()
    if user is None:
        user = get_user_model().objects.create_user(USER, password=PASSWORD)
    Membership.objects.get_or_create(organization=org, user=user, defaults={"role": Role.OWNER})
    return org


_TEXTS = (
    "Hi, can I move my appointment to Thursday?",
    "Sure - Thursday at 15:00 is free. Shall I book it?",
    "What are your opening hours on Saturday?",
    "We are open 9:00-13:00 on Saturdays.",
    "I need a copy of my last invoice.",
)
_OUTCOMES = ("answered", "answered", "busy", "no_answer", "converted", "failed", "opt_out")


def _insert_traffic(org, bot_ids, start, end, messages: int, bulk: bool = False) -> None:
    """Conversations of PER_CONVERSATION messages spread evenly over [start, end), in SQL."""
    from django.db import connection

    from analytics.models import Campaign

    conversations = max(1, messages // PER_CONVERSATION)
    span = (end - start).total_seconds() - PER_CONVERSATION * 20  # last reply before `end`
    campaign = Campaign.objects.get(organization=org, slug="winter")
    dialer = campaign.bot_id
    started = time.perf_counter()
    with connection.cursor() as cursor:
        dropped = []
        if bulk:  # build the message indexes once, after the load
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'analytics_message'"
                " AND indexname NOT LIKE '%%pkey'"
            )
            dropped = cursor.fetchall()
            for name, _ in dropped:
                cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SELECT coalesce(max(id), 0) FROM analytics_conversation")
        (first_id,) = cursor.fetchone()
        cursor.execute(
            """
            INSERT INTO analytics_conversation (organization_id, bot_id, campaign_id, external_id,
                customer, channel, status, started_at, last_activity_at, ended_at, handoff, csat,
                call_outcome)
            SELECT %(org)s, b.bot, CASE WHEN b.bot = %(dialer)s THEN %(campaign)s END,
                'bench-' || (%(first)s + i), 'Customer ' || (i %% 9973),
                CASE WHEN b.bot = %(dialer)s THEN 'voice' ELSE 'web' END,
                CASE WHEN t < %(end)s - interval '30 minutes' THEN 'resolved' ELSE 'active' END,
                t, t + interval '180 seconds',
                CASE WHEN t < %(end)s - interval '30 minutes' THEN t + interval '200 seconds' END,
                i %% 17 = 0, CASE WHEN i %% 5 = 0 THEN 1 + i %% 5 END,
                CASE WHEN b.bot = %(dialer)s AND t < %(end)s - interval '30 minutes'
                     THEN (%(outcomes)s::text[])[1 + i %% 7] ELSE '' END
            FROM generate_series(0, %(n)s - 1) AS i,
                LATERAL (SELECT %(start)s + (i * %(step)s) * interval '1 second' AS t) AS s,
                LATERAL (SELECT (%(bots)s::bigint[])[1 + i %% %(nb)s] AS bot) AS b
            """,
            {
                "org": org.pk,
                "dialer": dialer,
                "campaign": campaign.pk,
                "first": first_id,
                "end": end,
                "start": start,
                "step": span / conversations,
                "n": conversations,
                "bots": bot_ids,
                "nb": len(bot_ids),
                "outcomes": list(_OUTCOMES),
            },
        )
        cursor.execute(
            """
            INSERT INTO analytics_message (organization_id, bot_id, conversation_id, direction, text,
                created_at, response_time_ms, outcome, tokens, cost_usd, kb_hit)
            SELECT c.organization_id, c.bot_id, c.id,
                CASE WHEN j %% 2 = 0 THEN 'inbound' ELSE 'outbound' END,
                (%(texts)s::text[])[1 + (c.id + j) %% 5],
                c.started_at + j * interval '20 seconds',
                CASE WHEN j %% 2 = 1 THEN (250 + 700 * -ln(1 - random()))::int END,
                CASE WHEN j %% 2 = 0 THEN ''
                     WHEN (c.id + j) %% 20 = 1 THEN 'failed'
                     WHEN (c.id + j) %% 20 = 3 THEN 'fallback' ELSE 'success' END,
                CASE WHEN j %% 2 = 1 THEN 180 + (c.id %% 120) ELSE 0 END,
                CASE WHEN j %% 2 = 1 THEN 0.00045 ELSE 0 END,
                CASE WHEN j %% 2 = 1 THEN (c.id + j) %% 4 <> 0 END
            FROM analytics_conversation c CROSS JOIN generate_series(0, %(per)s - 1) AS j
            WHERE c.organization_id = %(org)s AND c.id > %(first)s
            """,
            {"org": org.pk, "first": first_id, "per": PER_CONVERSATION, "texts": list(_TEXTS)},
        )
        cursor.execute(
            """
            INSERT INTO analytics_activity (organization_id, bot_id, kind, description, customer,
                value, created_at)
            SELECT c.organization_id, c.bot_id,
                (ARRAY['call', 'booking', 'email', 'task'])[1 + c.id %% 4],
                'Bench activity', c.customer,
                CASE WHEN c.id %% 4 = 1 THEN 120.00 END, c.started_at + interval '60 seconds'
            FROM analytics_conversation c JOIN analytics_bot b ON b.id = c.bot_id
            WHERE c.organization_id = %(org)s AND c.id > %(first)s AND b.kind = 'ai_employee'
              AND c.id %% 3 = 0
            """,
            {"org": org.pk, "first": first_id},
        )
        for name, definition in dropped:
            print(f"  rebuilding index {name} ...", flush=True)
            cursor.execute(definition)
    print(f"  inserted in {time.perf_counter() - started:.0f} s", flush=True)


# --- the measurement ---------------------------------------------------------------------------


def signed_in(base: str):
    import requests

    session = requests.Session()
    login = session.get(f"{base}/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    response = session.post(
        f"{base}/accounts/login/",
        data={"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/accounts/login/"},
    )
    assert response.url.rstrip("/").endswith("/o/acme"), f"sign-in failed: {response.url}"
    return session


def first_render(session, base: str, n: int, warmup: int = 5) -> tuple[list[float], str]:
    url = f"{base}/o/acme/"
    for _ in range(warmup):
        session.get(url).raise_for_status()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = session.get(url)
        response.content  # noqa: B018 - to the last byte
        times.append(1000 * (time.perf_counter() - started))
        response.raise_for_status()
    return times, response.text


def first_load(session, base: str, html: str) -> list[tuple[str, str, int, int]]:
    """(path, encoding, bytes on the wire, bytes decoded) of the page and each asset it loads."""
    page = session.get(f"{base}/o/acme/", headers={"Accept-Encoding": "br, gzip"}, stream=True)
    wire = page.raw.read(decode_content=False)
    rows = [
        (
            "/o/acme/ (HTML)",
            page.headers.get("Content-Encoding", "identity"),
            len(wire),
            len(html.encode()),
        )
    ]
    assets = re.findall(r'<script[^>]+src="([^"]+)"', html) + re.findall(
        r'<link[^>]+href="([^"]+)"', html
    )
    for path in dict.fromkeys(assets):
        response = session.get(base + path, headers={"Accept-Encoding": "br, gzip"}, stream=True)
        response.raise_for_status()
        body = response.raw.read(decode_content=False)
        decoded = len(session.get(base + path, headers={"Accept-Encoding": "identity"}).content)
        rows.append(
            (path, response.headers.get("Content-Encoding", "identity"), len(body), decoded)
        )
    return rows


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--messages", type=int, default=MESSAGES)
    parser.add_argument("--database", default=BENCH_DB, help="kept between runs")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.messages)
        return

    scratch = database(args.messages, args.database)
    scratch.manage("collectstatic", "--noinput", "-v", "0")
    port = free_port()
    web = start_web(scratch, port)
    base = f"http://127.0.0.1:{port}"
    try:
        session = signed_in(base)
        times, html = first_render(session, base, args.requests)
        assets = first_load(session, base, html)
    finally:
        stop(web)
    with scratch.connect() as conn:
        messages = conn.execute("SELECT count(*) FROM analytics_message").fetchone()[0]

    p50, p95 = statistics.median(times), pct(times, 0.95)
    total = sum(wire for _, _, wire, _ in assets)
    print()
    print(
        f"Live page first render · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · "
        f"{os.cpu_count()} cores · {messages:,} messages · one daphne process"
    )
    print("| requests | p50 ms | p95 ms | max ms | target p95 |")
    print("|---|---|---|---|---|")
    print(
        f"| {len(times)} | {p50:.1f} | {p95:.1f} | {max(times):.1f} | "
        f"<= {TARGET_P95_MS:.0f} ms: {'PASS' if p95 <= TARGET_P95_MS else 'FAIL'} |"
    )
    print()
    print("| first load | encoding | bytes on the wire | bytes decoded |")
    print("|---|---|---|---|")
    for path, encoding, wire, decoded in assets:
        print(f"| `{path}` | {encoding} | {wire:,} | {decoded:,} |")
    print(
        f"| **total** | | **{total:,}** | {sum(d for *_, d in assets):,} |"
        f"\ntarget <= {TARGET_BYTES:,} bytes: {'PASS' if total <= TARGET_BYTES else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
