"""python manage.py seed_demo [--days 30] [--scale 1] [--seed 42] [--reset]"""

import time
from datetime import timedelta

import redis
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from analytics.services.backfill import backfill_finish, backfill_run_unit, backfill_start
from analytics.services.demo import (
    DEMO_ORGS,
    DEMO_PASSWORD,
    demo_accounts_ensure,
    demo_history_delete,
    demo_history_exists,
    demo_history_seed,
    staff_account_ensure,
)
from analytics.services.live import live_rebuild
from analytics.services.rollup import rollup_mark_history


class Command(BaseCommand):
    help = "Create the demo orgs (acme, globex), logins, bots and realistic history. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=30, help="days of history (default 30)")
        parser.add_argument(
            "--scale", type=float, default=1.0, help="traffic multiplier (default 1)"
        )
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        parser.add_argument("--reset", action="store_true", help="replace existing demo history")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, days, scale, seed, reset, no_progress, **options):
        if not 1 <= days <= 400:
            raise CommandError("--days must be between 1 and 400.")
        if not 0 < scale <= 100:
            raise CommandError("--scale must be above 0 and at most 100.")
        staff_account_ensure()
        started = time.monotonic()
        totals = {"conversations": 0, "messages": 0, "activities": 0}
        for spec in DEMO_ORGS:
            org, bots, campaigns = demo_accounts_ensure(spec=spec)
            if demo_history_exists(org=org):
                if not reset:
                    self.stdout.write(
                        f"{org.slug}: history already present (use --reset to rebuild)"
                    )
                    continue
                demo_history_delete(org=org)
            hours = days * 24 + 1
            with tqdm(
                total=hours,
                desc=f"seeding {org.slug}",
                unit="h",
                disable=no_progress,
                file=self.stderr._out,
                leave=False,
            ) as bar:
                result = demo_history_seed(
                    org=org,
                    spec=spec,
                    bots=bots,
                    campaigns=campaigns,
                    days=days,
                    scale=scale,
                    seed=seed,
                    on_hour=lambda bar=bar: bar.update(1),
                )
            self._rollups_build(org, days, no_progress)
            try:
                live_rebuild(org=org)  # the live dashboard starts with the last two hours
            except redis.RedisError as exc:
                self.stderr.write(
                    f"{org.slug}: live state not rebuilt ({exc}); it fills as events arrive"
                )
            for key in totals:
                totals[key] += getattr(result, key)
            self.stdout.write(
                f"{org.slug}: {result.conversations:,} conversations, {result.messages:,} messages, "
                f"{result.activities:,} activities, {result.gauges:,} gauge samples"
            )
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready in {elapsed:.1f}s ({totals['messages']:,} messages). "
                f"Sign in as demo / {DEMO_PASSWORD} (org acme), globex / {DEMO_PASSWORD}, "
                f"or admin / {DEMO_PASSWORD} (platform staff)."
            )
        )

    def _rollups_build(self, org, days: int, no_progress: bool) -> None:
        """Charts read rollups: build them for the seeded history (the current hour stays marked
        dirty for the hourly run, today for the daily run at 01:00)."""
        rollup_mark_history(org_id=org.pk)
        today = timezone.now().astimezone(org.tz).date()
        run, units, _ = backfill_start(
            org=org, since=today - timedelta(days=days), until=today, via_celery=False, restart=True
        )
        for unit in tqdm(
            units,
            desc=f"rolling up {org.slug}",
            unit="unit",
            disable=no_progress,
            file=self.stderr._out,
            leave=False,
        ):
            backfill_run_unit(backfill=run, org=org, unit=unit)
        backfill_finish(backfill=run)
