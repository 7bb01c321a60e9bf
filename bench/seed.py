"""Benchmark: seed_demo writing ~1M messages (target: under 2 minutes on a 2-core machine).

Run:  make bench-seed            (or: python -m config.launcher run -- python bench/seed.py)
It uses the configured PostgreSQL (or the embedded one) but its own scratch database
`botflow_bench_seed`, which it creates, migrates, seeds and drops. Options: --scale (default 10,
about 1.07M messages over 30 days), --days. Prints one table; copy it into docs/BENCHMARKS.md.
"""

import argparse
import os
import platform
import time
from datetime import UTC, datetime

from scratch import raw_copy_rate, scratch_database

BENCH_DB = "botflow_bench_seed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()

    with scratch_database(BENCH_DB) as scratch:
        started = time.perf_counter()
        out = scratch.manage(
            "seed_demo",
            "--no-progress",
            "--scale",
            str(args.scale),
            "--days",
            str(args.days),
            capture_output=True,
            text=True,
        ).stdout
        seconds = time.perf_counter() - started
        with scratch.connect() as conn:
            messages = conn.execute("SELECT count(*) FROM analytics_message").fetchone()[0]
            conversations = conn.execute("SELECT count(*) FROM analytics_conversation").fetchone()[
                0
            ]
            raw_rate = raw_copy_rate(conn)
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


if __name__ == "__main__":
    main()
