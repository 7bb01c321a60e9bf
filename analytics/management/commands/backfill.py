"""python manage.py backfill --org acme --since 2026-10-01 [--until 2026-10-31] [--via-celery]"""

import time
from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from analytics.models import Organization
from analytics.services.backfill import (
    backfill_done_count,
    backfill_enqueue_unit,
    backfill_finish,
    backfill_run_unit,
    backfill_start,
)


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date like 2026-10-01.") from None


class Command(BaseCommand):
    help = (
        "Rebuild hourly rollups, org usage, daily bot metrics and conversation metrics of an org "
        "for a range of days (org time zone). Resumable: run it again to continue."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--since", required=True, help="first day, e.g. 2026-10-01")
        parser.add_argument("--until", help="last day (default: today in the org's time zone)")
        parser.add_argument(
            "--via-celery", action="store_true", help="queue the units for the workers (parallel)"
        )
        parser.add_argument(
            "--restart", action="store_true", help="ignore an unfinished run of the same range"
        )
        parser.add_argument(
            "--stall-timeout",
            type=float,
            default=600,
            help="--via-celery: give up waiting after this many seconds without progress",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(
        self, *args, org, since, until, via_celery, restart, stall_timeout, no_progress, **options
    ):
        try:
            organization = Organization.objects.get(slug=org)
        except Organization.DoesNotExist:
            raise CommandError(f"No organization with slug {org!r}.") from None
        since_day = _date(since)
        until_day = _date(until) if until else timezone.now().astimezone(organization.tz).date()
        if until_day < since_day:
            raise CommandError("--until is before --since.")
        run, units, done = backfill_start(
            org=organization,
            since=since_day,
            until=until_day,
            via_celery=via_celery,
            restart=restart,
        )
        todo = [u for u in units if u not in done]
        if done:
            self.stdout.write(
                f"resuming the run started {run.started_at:%Y-%m-%d %H:%M} UTC: "
                f"{len(done):,} of {len(units):,} units already done"
            )
        started = time.monotonic()
        with tqdm(
            total=len(units),
            initial=len(done),
            desc=f"backfill {organization.slug}",
            unit="unit",
            disable=no_progress,
            file=self.stderr._out,
        ) as bar:
            if via_celery:
                for unit in todo:
                    backfill_enqueue_unit(backfill=run, org=organization, unit=unit)
                self._wait(run, bar, len(units), stall_timeout)
            else:
                for unit in todo:
                    backfill_run_unit(backfill=run, org=organization, unit=unit)
                    bar.update(1)
        backfill_finish(backfill=run)
        self.stdout.write(
            f"{organization.slug}: {len(units):,} units ({len(todo):,} built now) from {since_day} "
            f"to {until_day} in {time.monotonic() - started:.1f} s"
        )

    def _wait(self, run, bar, total: int, stall_timeout: float) -> None:
        last, last_change = bar.n, time.monotonic()
        while True:
            done = backfill_done_count(backfill=run)
            if done != last:
                bar.update(done - last)
                last, last_change = done, time.monotonic()
            if done >= total:
                return
            if time.monotonic() - last_change > stall_timeout:
                raise CommandError(
                    f"no progress for {stall_timeout:.0f} s ({done:,}/{total:,} units): are the "
                    "workers running (`celery -A config worker`)? Run the same command again to "
                    "resume."
                )
            time.sleep(0.5)
