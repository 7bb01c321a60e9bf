"""python manage.py pulse — every ~250 ms, render and publish the live fragments of dirty orgs."""

import time

import redis
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from analytics.services.ops import ops_pulse_tick
from dashboard.broadcast import pulse_tick


class Command(BaseCommand):
    help = "Push live dashboard updates: render once per org with new data, publish once."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=0.25, help="seconds between ticks")

    def handle(self, *args, interval, **options):
        self.stdout.write(f"pulse: every {interval * 1000:.0f} ms")
        try:
            while True:
                started = time.monotonic()
                try:
                    orgs = pulse_tick()
                    ops_pulse_tick(
                        started=time.time(),
                        seconds=time.monotonic() - started,
                        orgs=orgs,
                        interval=interval,
                    )
                except redis.RedisError as exc:
                    self.stderr.write(f"pulse: Redis unavailable ({exc}); retrying in 1 s")
                    time.sleep(1)
                close_old_connections()
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        except KeyboardInterrupt:
            self.stdout.write("pulse: stopped")
