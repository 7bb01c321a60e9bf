"""Benchmark: the idempotency-receipt INSERT of one ingest batch, in one sitting, three ways.

- `unpartitioned`: the table as migration 0010 left it (unique (org, event id), BRIN on
  received_at), ON CONFLICT on (org, event id): a copy made here, `bench_receipt_plain`.
- `by month`: the partitioned table of migration 0011 (unique (org, event id, month)): what
  ingestion runs.
- `by month + lookup`: the same, plus looking the batch's ids up in every month of the retention
  (`NOT IN (SELECT ... event_id = ANY(ids))`), which would also catch an id re-sent with a
  timestamp in another month — the alternative that was measured and not taken.

What it starts: a scratch database `botflow_bench_receipts` (created, migrated, dropped at the
end); both tables are filled with the same receipts of 20 orgs over the last 13 months (a steady
state: the month partitions hold data), then batches of fresh ids for one org are inserted, the
three statements interleaved, each batch in its own transaction. ingest.py starts from an empty
table, so it cannot show what a year of receipts does to these lookups.

Run:  make bench-receipts  (or: python -m config.launcher run -- python bench/receipts.py)
      options: --rows 2000000 --rounds 200 --batch 500
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from scratch import scratch_database

BENCH_DB = "botflow_bench_receipts"
PLAIN = "bench_receipt_plain"
PART = "analytics_eventreceipt"

UNPARTITIONED = f"""
INSERT INTO {PLAIN} (organization_id, event_id, type, received_at)
SELECT %s, e.id, e.type, %s FROM unnest(%s::uuid[], %s::text[]) AS e(id, type)
ORDER BY e.id
ON CONFLICT (organization_id, event_id) DO NOTHING
RETURNING event_id::text
"""
BY_MONTH = f"""
INSERT INTO {PART} (organization_id, event_id, type, occurred_month, received_at)
SELECT %s, e.id, e.type, e.month, %s
FROM unnest(%s::uuid[], %s::text[], %s::date[]) AS e(id, type, month)
ORDER BY e.id
ON CONFLICT (organization_id, event_id, occurred_month) DO NOTHING
RETURNING event_id::text
"""
BY_MONTH_LOOKUP = f"""
INSERT INTO {PART} (organization_id, event_id, type, occurred_month, received_at)
SELECT %s, e.id, e.type, e.month, %s
FROM unnest(%s::uuid[], %s::text[], %s::date[]) AS e(id, type, month)
WHERE e.id NOT IN (
    SELECT event_id FROM {PART}
    WHERE organization_id = %s AND event_id = ANY(%s::uuid[]) AND occurred_month >= %s
)
ORDER BY e.id
ON CONFLICT (organization_id, event_id, occurred_month) DO NOTHING
RETURNING event_id::text
"""
STATEMENTS = {
    "unpartitioned": UNPARTITIONED,
    "by month": BY_MONTH,
    "by month + lookup": BY_MONTH_LOOKUP,
}


def month(at: datetime) -> date:
    return at.astimezone(UTC).date().replace(day=1)


def fill(conn, rows: int) -> None:
    conn.execute(
        f"CREATE TABLE {PLAIN} (id bigserial PRIMARY KEY, event_id uuid NOT NULL, "
        "type varchar(32) NOT NULL, received_at timestamptz NOT NULL, "
        "organization_id bigint NOT NULL, UNIQUE (organization_id, event_id))"
    )
    conn.execute(f"CREATE INDEX ON {PLAIN} USING brin (received_at)")
    conn.execute(
        f"INSERT INTO {PLAIN} (organization_id, event_id, type, received_at) "
        "SELECT 1 + g %% 20, gen_random_uuid(), 'message', "
        "now() - interval '395 days' * (1 - g::float8 / %s) FROM generate_series(1, %s) g",
        [rows, rows],
    )
    conn.execute(
        f"INSERT INTO {PART} (organization_id, event_id, type, received_at, occurred_month) "
        "SELECT organization_id, event_id, type, received_at, "
        f"date_trunc('month', received_at AT TIME ZONE 'UTC')::date FROM {PLAIN}"
    )
    conn.execute(f"VACUUM ANALYZE {PLAIN}")
    conn.execute(f"VACUUM ANALYZE {PART}")


def insert_batch(conn, name: str, batch: int) -> float:
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(batch)]
    params: list = [1, now, ids, ["message"] * batch]
    if name != "unpartitioned":
        params.append([month(now)] * batch)
    if name == "by month + lookup":
        params += [1, ids, month(now - timedelta(days=395))]
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(STATEMENTS[name], params)
        assert len(cursor.fetchall()) == batch
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="receipts filled in first")
    parser.add_argument("--rounds", type=int, default=200, help="batches per statement")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with scratch_database(BENCH_DB) as scratch, scratch.connect() as conn:
        started = time.perf_counter()
        fill(conn, args.rows)
        print(f"filled {args.rows:,} receipts per table in {time.perf_counter() - started:.0f} s")
        times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
        for _ in range(5):  # warm up, past psycopg's prepare threshold
            for name in STATEMENTS:
                insert_batch(conn, name, args.batch)
        for _ in range(args.rounds):
            for name in STATEMENTS:
                times[name].append(insert_batch(conn, name, args.batch))
    print()
    print(
        f"receipt insert · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · "
        f"{args.rows:,} receipts over 13 months · {args.rounds} batches of {args.batch} each"
    )
    print("| statement | median ms | p90 ms | µs per event | vs unpartitioned |")
    print("|---|---|---|---|---|")
    base = statistics.median(times["unpartitioned"])
    for name, spent in times.items():
        median = statistics.median(spent)
        p90 = statistics.quantiles(spent, n=10)[8]
        print(
            f"| {name} | {median * 1000:.2f} | {p90 * 1000:.2f} | "
            f"{median / args.batch * 1e6:.1f} | {median / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
