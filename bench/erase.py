"""Benchmark: erasing one customer with 10,000 messages (issue 14 target: <= 2 s).

Run:  python -m config.launcher run -- python bench/erase.py [--migrate]
It works in the configured database (DATABASE_URL; --migrate first if it is a fresh one) inside
an org of its own, which it removes afterwards. It seeds, with COPY, background traffic of other
customers (--background conversations x 100 messages) and two customers of --messages messages
each (in 20 conversations, with metrics and 200 activities, and items in the live feed), then:
  1. erases the first customer with no finished export on disk;
  2. writes a finished CSV export of every message of the org (the background included) and
     erases the second customer, whose rows the file holds, so the file is rewritten.
Prints one table; copy it into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from analytics.live_keys import org_key  # noqa: E402
from analytics.models import (  # noqa: E402
    Activity,
    Bot,
    Conversation,
    ConversationMetrics,
    CustomerErasure,
    Message,
    Organization,
)
from analytics.redis import get_redis  # noqa: E402
from analytics.services.customers import customer_erase  # noqa: E402
from analytics.services.export import ExportJob, _job_save, export_job_run  # noqa: E402
from analytics.services.rollup import conversation_metrics_build_many  # noqa: E402

CONVERSATIONS_PER_CUSTOMER = 20


def seed_conversations(org, bot, customer: str, conversations: int, messages_each: int, now):
    """COPY `conversations` conversations of `customer` with `messages_each` messages each."""
    with connection.cursor() as cursor:
        with cursor.cursor.copy(
            f"COPY {Conversation._meta.db_table} (organization_id, bot_id, external_id, customer, "  # noqa: S608
            "channel, status, started_at, last_activity_at, handoff, call_outcome) FROM STDIN"
        ) as copy:
            for n in range(conversations):
                at = now - timedelta(minutes=n)
                copy.write_row(
                    (org.pk, bot.pk, f"{customer}-{n}-{uuid.uuid4().hex[:6]}", customer, "whatsapp")
                    + ("resolved", at, at, False, "")
                )
        cursor.execute(
            f"SELECT id, started_at FROM {Conversation._meta.db_table} "  # noqa: S608
            "WHERE organization_id = %s AND customer = %s",
            [org.pk, customer],
        )
        ids = cursor.fetchall()
        with cursor.cursor.copy(
            f"COPY {Message._meta.db_table} (organization_id, bot_id, conversation_id, direction, "  # noqa: S608
            "text, created_at, response_time_ms, outcome, tokens, cost_usd, kb_hit) FROM STDIN"
        ) as copy:
            for conv_id, started in ids:
                for i in range(messages_each):
                    inbound = i % 2 == 0
                    copy.write_row(
                        (
                            org.pk,
                            bot.pk,
                            conv_id,
                            "inbound" if inbound else "outbound",
                            f"message {i} from {customer}" if inbound else "Happy to help!",
                            started + timedelta(seconds=i),
                            None if inbound else 800,
                            "" if inbound else "success",
                            0 if inbound else 120,
                            "0.0003",
                            None,
                        )
                    )
    return [conv_id for conv_id, _ in ids]


def seed_customer(org, bot, customer: str, messages: int, now) -> None:
    ids = seed_conversations(
        org, bot, customer, CONVERSATIONS_PER_CUSTOMER, messages // CONVERSATIONS_PER_CUSTOMER, now
    )
    conversation_metrics_build_many(org_id=org.pk, conversation_ids=ids)
    Activity.objects.bulk_create(
        Activity(
            organization=org,
            bot=bot,
            kind="call",
            description=f"Called {customer}",
            customer=customer,
        )
        for _ in range(200)
    )
    r = get_redis()
    for i in range(10):
        item = {"kind": "message", "conversation": ids[i], "customer": customer, "text": "hi"}
        r.lpush(org_key(org.pk, "feed"), orjson.dumps(item))


def remove_org(org) -> None:
    with connection.cursor() as cursor:
        for model in (Message, ConversationMetrics, Activity, CustomerErasure):
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE organization_id = %s",  # noqa: S608
                [org.pk],
            )
    org.delete()
    r = get_redis()
    for key in r.scan_iter(org_key(org.pk, "*")):
        r.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--background", type=int, default=2_000, help="other conversations")
    parser.add_argument("--migrate", action="store_true")
    args = parser.parse_args()
    if args.migrate:
        call_command("migrate", verbosity=0)
    settings.EXPORT_DIR = tempfile.mkdtemp(prefix="bench-erase-")
    now = datetime.now(UTC) - timedelta(hours=1)
    org = Organization.objects.create(
        name="Erase bench", slug=f"bench-erase-{uuid.uuid4().hex[:8]}"
    )
    try:
        bot = Bot.objects.create(organization=org, slug="bot", name="Bot")
        started = time.perf_counter()
        for n in range(args.background // 100):
            seed_conversations(org, bot, f"background {n}", 100, 100, now)
        seed_customer(org, bot, "+27 82 555 0101", args.messages, now)
        seed_customer(org, bot, "+27 82 555 0202", args.messages, now)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Message._meta.db_table}")  # noqa: S608
            cursor.execute(f"ANALYZE {Conversation._meta.db_table}")  # noqa: S608
        total = Message.objects.for_org(org).count()
        seeded_in = time.perf_counter() - started

        t0 = time.perf_counter()
        first = customer_erase(org=org, customer="+27 82 555 0101", actor_label="bench")
        plain = time.perf_counter() - t0

        job = ExportJob(
            id=str(uuid.uuid4()),
            org_id=org.pk,
            kind="messages",
            query="range=90d",
            now=datetime.now(UTC).isoformat(),
            filename="all.csv",
        )
        _job_save(job)
        job = export_job_run(job_id=job.id)
        size = job.path.stat().st_size
        t0 = time.perf_counter()
        second = customer_erase(org=org, customer="+27 82 555 0202", actor_label="bench")
        with_file = time.perf_counter() - t0
    finally:
        remove_org(org)
        shutil.rmtree(settings.EXPORT_DIR, ignore_errors=True)

    print(
        f"customer erasure benchmark · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · "
        f"{os.cpu_count()} cores · Python {platform.python_version()} · seeded in {seeded_in:.0f} s"
    )
    print("| case | org messages | customer messages | activities | export file | erase |")
    print("|---|---|---|---|---|---|")
    for name, receipt, seconds, file in (
        ("no export on disk", first, plain, "—"),
        ("a finished export of the org", second, with_file, f"{size / 1e6:.0f} MB"),
    ):
        c = receipt.counts
        print(
            f"| {name} | {total:,} | {c['messages']:,} | {c['activities']:,} | {file} "
            f"(rows removed {c['export_rows']:,}) | {seconds * 1000:,.0f} ms |"
        )
    print("target: <= 2 s for a customer with 10,000 messages")


if __name__ == "__main__":
    main()
