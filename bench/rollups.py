"""Benchmark: rollups over 10M messages (issue 5 targets), on the shared big-data database.

Run:  make bench-rollups   (or: flock /tmp/botflow-bench.lock python bench/rollups.py)
Uses `botflow_bench_10m` from bench/bigdata.py (created on first use, reused afterwards) and
prints medians of several runs:
  - one hourly rollup of the org-hour holding 100,000 messages (target <= 2 s)
  - one daily bot-metrics run of the org-day holding 1,000,000 messages (target <= 30 s)
  - a full 30-day backfill of all 10 orgs, 2 at a time: 7,200 org-hours, 300 days, ~1M
    conversations (target <= 10 min); it leaves the rollups built, as other benchmarks expect
  - p95 response time over 30 days for one bot from the hourly histograms (target <= 20 ms),
    next to percentile_cont over the raw rows in the same run
Options: --runs N (default 5), --backfill-runs N (default 1; 0 skips it), --reset.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bigdata import ROLLUP_TABLES, backfill_all, ensure_bigdata  # noqa: E402


def timed(fn, runs: int, before=None) -> list[float]:
    seconds = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backfill-runs", type=int, default=1)
    parser.add_argument("--reset", action="store_true")
    args = parser.parse_args()

    scratch = ensure_bigdata(reset=args.reset)
    meta = scratch.meta
    os.environ["DATABASE_URL"] = scratch.url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DB_POOL", "false")
    import django

    django.setup()
    from django.db import connection

    from analytics import sketch
    from analytics.models import Bot, BotDailyMetrics, BotHourlyRollup, Organization
    from analytics.selectors import daily_hist_days
    from analytics.selectors.summaries import range_hist
    from analytics.services.rollup import rollup_build_daily, rollup_build_hourly
    from analytics.timeutil import org_day_bounds

    org = Organization.objects.get(slug=meta["spike_org"])
    hour = datetime.fromisoformat(meta["spike_hour"])
    day = date.fromisoformat(meta["spike_day"])
    rows = []

    def count(sql, params) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    # 1. one hourly rollup of the busiest org-hour
    hour_messages = count(
        "SELECT count(*) FROM analytics_message WHERE organization_id = %s"
        " AND created_at >= %s AND created_at < %s",
        [org.pk, hour, hour + timedelta(hours=1)],
    )
    hourly = timed(
        lambda: rollup_build_hourly(org_id=org.pk, hour=hour),
        args.runs,
        before=lambda: BotHourlyRollup.objects.for_org(org).filter(hour=hour).delete(),
    )
    rows.append(("hourly rollup, one org-hour", f"{hour_messages:,} messages", hourly, 2.0))

    # 2. one daily bot-metrics run of the busiest org-day
    start, end = org_day_bounds(org, day)
    day_messages = count(
        "SELECT count(*) FROM analytics_message WHERE organization_id = %s"
        " AND created_at >= %s AND created_at < %s",
        [org.pk, start, end],
    )
    daily = timed(
        lambda: rollup_build_daily(org_id=org.pk, date=day),
        max(1, min(args.runs, 3)),
        before=lambda: BotDailyMetrics.objects.for_org(org).filter(date=day).delete(),
    )
    rows.append(("daily bot metrics, one org-day", f"{day_messages:,} messages", daily, 30.0))

    # 3. full 30-day backfill of every org (from empty rollup tables)
    if args.backfill_runs:

        def empty_rollups():
            with scratch.connect() as conn:
                conn.execute(f"TRUNCATE {', '.join(ROLLUP_TABLES)}")

        backfill = timed(
            lambda: backfill_all(scratch, meta, parallel=2), args.backfill_runs, empty_rollups
        )
        units = count("SELECT count(*) FROM analytics_rollupbackfillunit", [])
        rows.append(
            (
                "full 30-day backfill, 10 orgs (2 processes)",
                f"{meta['messages']:,} messages, {units:,} units",
                backfill,
                600.0,
            )
        )

    # 4. p95 over 30 days for one bot: merged hourly histograms vs percentile_cont on raw rows
    bot = Bot.objects.for_org(org).get(slug="support")
    since = datetime.fromisoformat(meta["first_hour"])
    until = datetime.fromisoformat(meta["last_hour"]) + timedelta(hours=1)
    result = {}

    def from_rollups():  # the product's read: daily histograms of whole days, hourly for the rest
        result["rollups"] = sketch.quantiles(range_hist(org, [bot.pk], since, until), [0.95])[0]

    def from_raw():
        result["raw"] = count(
            "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms)"
            " FROM analytics_message WHERE organization_id = %s AND bot_id = %s"
            " AND created_at >= %s AND created_at < %s",
            [org.pk, bot.pk, since, until],
        )

    bot_messages = count(
        "SELECT count(response_time_ms) FROM analytics_message WHERE organization_id = %s"
        " AND bot_id = %s AND created_at >= %s AND created_at < %s",
        [org.pk, bot.pk, since, until],
    )
    range_hours = [
        since + i * timedelta(hours=1) for i in range(round((until - since) / timedelta(hours=1)))
    ]
    n_days = (
        BotDailyMetrics.objects.for_org(org)
        .filter(
            bot=bot,
            response_hist__isnull=False,
            date__in=daily_hist_days(org, dict.fromkeys(range_hours, 0), range_hours),
        )
        .count()
    )
    read_rollups = timed(from_rollups, max(args.runs, 10))
    read_raw = timed(from_raw, args.runs)
    rows.append(
        (
            "p95 over 30 days, one bot, from rollups",
            f"{n_days} daily rows + hourly rows of partial days",
            read_rollups,
            0.02,
        )
    )
    rows.append(
        (
            "p95 over 30 days, one bot, percentile_cont on raw rows",
            f"{bot_messages:,} response times",
            read_raw,
            None,
        )
    )

    print()
    print(
        f"rollup benchmark · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · "
        f"{os.cpu_count()} cores · Python {platform.python_version()} · database seeded "
        f"{meta['seeded_at']} ({meta['messages']:,} messages, {meta['conversations']:,} conversations)"
    )
    print("| measurement | size | runs | median | min | max | target | result |")
    print("|---|---|---|---|---|---|---|---|")
    for name, size, seconds, target in rows:
        median = statistics.median(seconds)
        verdict = "" if target is None else ("PASS" if median <= target else "FAIL")
        print(
            f"| {name} | {size} | {len(seconds)} | {fmt(median)} | {fmt(min(seconds))} | "
            f"{fmt(max(seconds))} | {'' if target is None else '<= ' + fmt(target)} | {verdict} |"
        )
    ratio = statistics.median(read_raw) / statistics.median(read_rollups)
    print(
        f"\np95 from rollups {result['rollups']:,.0f} ms vs exact {result['raw']:,.0f} ms "
        f"({(result['rollups'] / result['raw'] - 1):+.2%}); rollups are {ratio:,.0f}x faster"
    )


if __name__ == "__main__":
    main()
