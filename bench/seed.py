"""Benchmark: seed_demo writing ~1M messages (target: under 2 minutes on a 2-core machine).

Run:  make bench-seed            (or: python -m config.launcher run -- python bench/seed.py)
It uses the configured PostgreSQL (or the embedded one) but its own scratch database
`botflow_bench_seed`, which it creates, migrates, seeds and drops. Options: --scale (default 10,
about 1.07M messages over 30 days), --days. Prints one table; copy it into docs/BENCHMARKS.md.
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.env import parse_database_url  # noqa: E402

BENCH_DB = "botflow_bench_seed"


def connect(db: dict, name: str) -> psycopg.Connection:
    return psycopg.connect(
        dbname=name,
        user=db["USER"],
        password=db["PASSWORD"],
        host=db["HOST"],
        port=db["PORT"] or None,
        autocommit=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()

    url = os.environ["DATABASE_URL"]
    db = parse_database_url("DATABASE_URL", url)
    with connect(db, db["NAME"]) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        admin.execute(f"CREATE DATABASE {BENCH_DB}")
    bench_url = re.sub(r"/[^/?]+(\?|$)", rf"/{BENCH_DB}\1", url.replace("://", ":__//"), count=1)
    bench_url = bench_url.replace(":__//", "://")
    env = {**os.environ, "DATABASE_URL": bench_url}
    try:
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, cwd=ROOT)
        started = time.perf_counter()
        out = subprocess.run(
            [
                *manage,
                "seed_demo",
                "--no-progress",
                "--scale",
                str(args.scale),
                "--days",
                str(args.days),
            ],
            env=env,
            check=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout
        seconds = time.perf_counter() - started
        with connect(db, BENCH_DB) as conn:
            messages = conn.execute("SELECT count(*) FROM analytics_message").fetchone()[0]
            conversations = conn.execute("SELECT count(*) FROM analytics_conversation").fetchone()[
                0
            ]
            raw_rate = raw_copy_rate(conn)
    finally:
        with connect(db, db["NAME"]) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    rate = messages / seconds
    print(out.strip().splitlines()[-1])
    print()
    print(
        f"seed_demo benchmark · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · "
        f"{os.cpu_count()} cores · Python {platform.python_version()}"
    )
    print(
        "| scale | days | conversations | messages | seconds | messages/s | raw COPY rows/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.scale:g} | {args.days} | {conversations:,} | {messages:,} | {seconds:.1f} | "
        f"{rate:,.0f} | {raw_rate:,.0f} | {rate / raw_rate:.0%} |"
    )
    print(
        f"target: 1M messages in under 120 s -> {'PASS' if seconds * 1_000_000 / messages < 120 else 'FAIL'}"
    )


def raw_copy_rate(conn: psycopg.Connection, rows: int = 200_000) -> float:
    """Rows/s of a bare COPY of synthetic messages into the same table, for the ratio."""
    conn.execute("CREATE TABLE msg_copy (LIKE analytics_message INCLUDING INDEXES)")
    org, bot, conv = conn.execute(
        "SELECT organization_id, bot_id, conversation_id FROM analytics_message LIMIT 1"
    ).fetchone()
    now = datetime.now(UTC)
    started = time.perf_counter()
    with conn.cursor().copy(
        "COPY msg_copy (id, organization_id, bot_id, conversation_id, direction, text, created_at, "
        "response_time_ms, outcome, tokens, cost_usd, kb_hit) FROM STDIN"
    ) as copy:
        for i in range(rows):
            copy.write_row(
                (
                    i,
                    org,
                    bot,
                    conv,
                    "outbound",
                    "Happy to help!",
                    now,
                    800,
                    "success",
                    200,
                    "0.0005",
                    True,
                )
            )
    return rows / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
