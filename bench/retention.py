"""Retention: how long dropping a whole month of messages takes (target: ~10M messages <= 1 s).

A scratch database `botflow_bench_retention` is migrated (so `analytics_message` is partitioned
by month), one org with a 30-day retention gets `--rows` messages in one month two years ago
(PostgreSQL's generate_series, all indexes in place, as ingestion would leave them) and a few in
the current month, then `retention_enforce()` runs: it must drop that month's partition whole,
keep this month's row, and take about as long with 10M rows as with none. Prints the
one partition's detach + drop time, then a whole retention run's.

    make bench-retention BENCH_ARGS="--rows 10000000"
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import scratch_database  # noqa: E402

SEED = """
INSERT INTO analytics_organization (name, slug, timezone, created_at, raw_retention_days,
    rollup_retention_days) VALUES ('Bench', 'bench-retention', 'UTC', now(), 30, 1825);
INSERT INTO analytics_bot (organization_id, slug, name, kind, channel, is_active, created_at,
    persona, avatar)
    SELECT id, 'support', 'Support', 'chatbot', 'web', true, now(), '', '' FROM analytics_organization;
INSERT INTO analytics_conversation (organization_id, bot_id, external_id, customer, channel,
    status, started_at, last_activity_at, handoff, call_outcome)
    SELECT o.id, b.id, 'c-old', '', 'web', 'ended', %(old)s, %(old)s, false, ''
    FROM analytics_organization o JOIN analytics_bot b ON b.organization_id = o.id;
"""
MESSAGES = """
INSERT INTO analytics_message (organization_id, bot_id, conversation_id, direction, text,
    created_at, response_time_ms, outcome, tokens, cost_usd, kb_hit)
SELECT c.organization_id, c.bot_id, c.id, 'inbound', 'where is my parcel ' || (g %% 97),
    %(start)s::timestamptz + (g::bigint * %(step)s) * interval '1 microsecond', NULL, '', 0, 0, NULL
FROM analytics_conversation c, generate_series(1, %(rows)s) g
WHERE c.external_id = 'c-old'
"""

DROP = """
import json, time
from analytics.models import Message
from analytics.services.partitions import partition_drop, partitions_list
from analytics.services.retention import retention_enforce
from django.db import connection
from analytics.partitioning import attach_partition_sql
full = max(partitions_list("analytics_message"), key=lambda p: p.rows_estimate)
started = time.perf_counter()
with connection.cursor() as cursor:  # the detach alone: the only step that locks the table
    cursor.execute(f'ALTER TABLE analytics_message DETACH PARTITION "{full.name}"')
    detach = time.perf_counter() - started
    cursor.execute(attach_partition_sql(full.table, full.month))  # back, for the real run
started = time.perf_counter()
dropped = partition_drop(full)
one = time.perf_counter() - started
started = time.perf_counter()
result = retention_enforce()
print(json.dumps({"partition": full.name, "rows_estimate": full.rows_estimate, "dropped": dropped,
                  "detach_seconds": detach,
                  "drop_seconds": one, "enforce_seconds": time.perf_counter() - started,
                  "enforce_dropped": len(result.dropped), "deleted": result.deleted,
                  "messages_left": Message.objects.count()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    with scratch_database("botflow_bench_retention") as scratch:
        with scratch.connect() as conn:
            cur = conn.execute("SELECT date_trunc('month', now() - interval '700 days')")
            start = cur.fetchone()[0]
            for statement in SEED.split(";")[:-1]:
                conn.execute(statement, {"old": start} if "%(old)s" in statement else None)
            conn.commit()
            # spread the rows over the month (30 days in microseconds / rows)
            step = max(1, 30 * 86_400_000_000 // max(args.rows, 1))
            t0 = time.perf_counter()
            conn.execute(MESSAGES, {"start": start, "rows": args.rows, "step": step})
            conn.commit()
            seeded = time.perf_counter() - t0
            conn.execute(
                "INSERT INTO analytics_message (organization_id, bot_id, conversation_id,"
                " direction, text, created_at, tokens, cost_usd, outcome)"
                " SELECT organization_id, bot_id, id, 'inbound', 'today', now(), 0, 0, ''"
                " FROM analytics_conversation"
            )
            conn.execute("ANALYZE analytics_message")
            conn.commit()
            cur = conn.execute(
                "SELECT tableoid::regclass::text, count(*) FROM analytics_message GROUP BY 1"
            )
            where = cur.fetchall()
        print(f"seeded {args.rows:,} messages in {seeded:.1f} s into {where}", flush=True)
        done = scratch.manage("shell", "-c", DROP, capture_output=True, text=True)
        line = done.stdout.strip().splitlines()[-1]
        print(f"retention_enforce: {line}")


if __name__ == "__main__":
    main()
