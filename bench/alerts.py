"""Alert evaluation: how long one minute-cycle over N rules takes (target: 1,000 rules <= 5 s).

Creates its own orgs (slug `bench-alerts-*`), bots, campaigns and rules with a realistic mix of
metrics, scopes and windows (5..60 minutes live, some 24-hour cost rules over the rollups), fills
the live minute counters and response-time histograms in Redis as ingestion would, then times
full evaluation cycles (`alert_rules_evaluate`), and removes everything it made.

    make bench-alerts BENCH_ARGS="--rules 1000 --orgs 50 --cycles 5"
    (a scratch database `botflow_bench_alerts` is created, migrated and dropped around the run)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

if __name__ == "__main__" and "BENCH_ALERTS_DB" not in os.environ:
    # Run again inside a scratch database of its own (created, migrated, dropped at the end).
    import subprocess

    from scratch import scratch_database

    with scratch_database("botflow_bench_alerts") as scratch:
        env = {**scratch.env, "BENCH_ALERTS_DB": scratch.name}
        code = subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode
    sys.exit(code)

import django  # noqa: E402

django.setup()

from django.utils import timezone  # noqa: E402

from analytics import sketch  # noqa: E402
from analytics.live_keys import bot_key, epoch_minute, org_key  # noqa: E402
from analytics.models import (  # noqa: E402
    AlertMetric,
    AlertRule,
    Bot,
    BotHourlyRollup,
    Campaign,
    Organization,
)
from analytics.redis import get_redis  # noqa: E402
from analytics.services.alerts import alert_rules_evaluate  # noqa: E402

METRIC_MIX = [
    (AlertMetric.P95_RESPONSE, 2000, 5000, "above"),
    (AlertMetric.AVG_RESPONSE, 1500, 4000, "above"),
    (AlertMetric.ERROR_RATE, 5, 15, "above"),
    (AlertMetric.FALLBACK_RATE, 10, 25, "above"),
    (AlertMetric.HANDOFF_RATE, 20, 40, "above"),
    (AlertMetric.SUCCESS_RATE, 90, 80, "below"),
    (AlertMetric.VOLUME, 5000, 10000, "above"),
    (AlertMetric.CONVERSATIONS, 500, 1000, "above"),
    (AlertMetric.COST_PER_DAY, 50, 100, "above"),
    (AlertMetric.NO_DATA, 10, 30, "above"),
    (AlertMetric.QUEUE_DEPTH, 50, 200, "above"),
    (AlertMetric.CSAT, 3.5, 2.5, "below"),
]


def setup(rules: int, orgs: int, bots_per_org: int, rng: random.Random) -> list[Organization]:
    made = []
    now = timezone.now()
    minute_now = epoch_minute(now)
    r = get_redis()
    for o in range(orgs):
        org = Organization.objects.create(slug=f"bench-alerts-{o}", name=f"Bench alerts {o}")
        made.append(org)
        bots = Bot.objects.bulk_create(
            Bot(organization=org, slug=f"bot-{b}", name=f"Bot {b}") for b in range(bots_per_org)
        )
        campaign = Campaign.objects.create(
            organization=org, slug="outbound", name="Outbound", bot=bots[0], status="active"
        )
        pipe = r.pipeline(transaction=False)
        for minute in range(minute_now - 120, minute_now + 1):
            org_fields = {}
            for bot in bots:
                fields = {
                    "in": rng.randint(5, 40),
                    "out": rng.randint(5, 40),
                    "ok": 30,
                    "fail": 1,
                    "fb": 2,
                    "rt_n": 30,
                    "rt_sum": 30 * 900,
                    "cs": 2,
                    "ce": 2,
                    "esc": 0,
                    "cost_u": 40_000,
                }
                hist = sketch.histogram_of(rng.lognormvariate(6.7, 0.5) for _ in range(30))
                pipe.hset(bot_key(org.pk, bot.pk, "m", minute), mapping=fields)
                pipe.hset(bot_key(org.pk, bot.pk, "h", minute), mapping=hist)
                pipe.expire(bot_key(org.pk, bot.pk, "m", minute), 3 * 3600)
                pipe.expire(bot_key(org.pk, bot.pk, "h", minute), 3 * 3600)
                for k, v in fields.items():
                    org_fields[k] = org_fields.get(k, 0) + v
                pipe.hincrby(org_key(org.pk, "h", minute), next(iter(hist)), 30)
            pipe.hset(org_key(org.pk, "m", minute), mapping=org_fields)
            pipe.expire(org_key(org.pk, "m", minute), 3 * 3600)
            pipe.expire(org_key(org.pk, "h", minute), 3 * 3600)
        pipe.hset(org_key(org.pk, "gauges"), "outbound:queue_depth", b'{"value": 12, "at": 0}')
        pipe.execute()
        hour0 = now.replace(minute=0, second=0, microsecond=0)
        BotHourlyRollup.objects.bulk_create(
            BotHourlyRollup(
                organization=org,
                bot=bot,
                hour=hour0 - timedelta(hours=h),
                messages_in=900,
                messages_out=900,
                successes=800,
                failures=20,
                fallbacks=30,
                cost_usd=1.5,
                response_count=850,
                response_sum_ms=850 * 900,
                conversations_started=60,
                conversations_ended=60,
                handoffs=3,
            )
            for bot in bots
            for h in range(1, 25)
        )
        per_org = rules // orgs + (1 if o < rules % orgs else 0)
        batch = []
        for i in range(per_org):
            metric, warning, critical, comparison = METRIC_MIX[i % len(METRIC_MIX)]
            scope = rng.random()
            bot = rng.choice(bots) if scope < 0.6 and metric != AlertMetric.QUEUE_DEPTH else None
            batch.append(
                AlertRule(
                    organization=org,
                    name=f"rule {i}",
                    metric=metric,
                    bot=bot,
                    campaign=campaign
                    if metric == AlertMetric.QUEUE_DEPTH and scope < 0.5
                    else None,
                    comparison=comparison,
                    warning_threshold=warning,
                    critical_threshold=critical,
                    window_minutes=rng.choice([5, 10, 15, 30, 60]),
                )
            )
        AlertRule.objects.bulk_create(batch)
    return made


def teardown(orgs: list[Organization]) -> None:
    r = get_redis()
    for org in orgs:
        bot_ids = list(Bot.objects.for_org(org).values_list("pk", flat=True))
        for pattern in [org_key(org.pk, "*")] + [bot_key(org.pk, b, "*") for b in bot_ids]:
            keys = list(r.scan_iter(pattern, count=1000))
            if keys:
                r.delete(*keys)
        org.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", type=int, nargs="+", default=[1000])
    parser.add_argument("--orgs", type=int, default=50)
    parser.add_argument("--bots", type=int, default=4, help="bots per org")
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(42)
    Organization.objects.filter(slug__startswith="bench-alerts-").delete()
    print("| rules | orgs | bots | cycles | min s | median s | max s | rules/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.rules:
        orgs = setup(n, args.orgs, args.bots, rng)
        try:
            ids = [o.pk for o in orgs]
            alert_rules_evaluate(org_ids=ids)  # warm-up: the first cycle writes every state
            times = []
            for _ in range(args.cycles):
                started = time.perf_counter()
                stats = alert_rules_evaluate(org_ids=ids)
                times.append(time.perf_counter() - started)
                assert stats.rules == n, stats
            med = statistics.median(times)
            print(
                f"| {n:,} | {args.orgs} | {args.orgs * args.bots} | {args.cycles} | "
                f"{min(times):.2f} | {med:.2f} | {max(times):.2f} | {n / med:,.0f} |"
            )
        finally:
            teardown(orgs)


if __name__ == "__main__":
    main()
