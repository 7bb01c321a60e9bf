"""python manage.py pulse — render and publish the live fragments of orgs with new data.

Ticks are at least `--interval` apart (150 ms), which caps the frames a viewer receives at ~7/s
however busy the org is. An idle pulse does not wait for its next tick: new data (ingestion
publishes on the wake channel) is rendered at once, so a quiet dashboard updates within
milliseconds and a busy one within a tick.

An outage of PostgreSQL or Redis does not end it: it logs one warning, retries with backoff
(config.outage) and, once both answer again, renders every watched org in full at once. A Redis
that came back empty is noticed on the next tick and the live state rebuilt from PostgreSQL
(analytics.services.live.live_recover), so the figures are whole again, not counted from zero.

Any number of pulses may run: they share the orgs (dashboard.pulse_shards), each org rendered by
exactly one of them, and a pulse that dies hands its orgs to the others within PULSE_TTL.
"""

import contextlib
import logging
import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from analytics.live_keys import dirty_key, wake_channel
from analytics.redis import get_redis
from analytics.services.live import live_recover
from analytics.services.ops import ops_pulse_tick
from config.outage import TRANSIENT, Outage
from dashboard.broadcast import forget_published, pulse_tick
from dashboard.pulse_shards import PulseShard

log = logging.getLogger("botflow.pulse")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Push live dashboard updates: render once per org with new data, publish once."

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval",
            type=float,
            default=0.15,
            help="least seconds between ticks (an event waits at most this long for its frame)",
        )

    def handle(self, *args, interval, **options):
        self.stdout.write(f"pulse: at most every {interval * 1000:.0f} ms, at once when idle")
        shard = PulseShard()
        # SIGTERM (a deploy, `kill`) ends it like Ctrl-C: it leaves the pulse hash on the way out,
        # so the other pulses take its orgs at their next tick instead of after PULSE_TTL.
        signal.signal(signal.SIGTERM, _interrupt)
        wake = None
        outage = Outage("pulse", logger=log)
        last_busy = float("-inf")  # when the last tick with new data started
        try:
            while True:
                try:
                    wake = wake or self._subscribe()
                    if not get_redis().scard(dirty_key()):
                        # Idle: wait for new data (at most 1 s, so heartbeats still come).
                        wake.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        while wake.get_message(ignore_subscribe_messages=True, timeout=0):
                            pass  # one tick serves every wake-up received meanwhile
                    time.sleep(max(0.0, last_busy + interval - time.monotonic()))
                    started = time.monotonic()
                    live_recover()  # Redis restarted empty: rebuild from PostgreSQL first
                    orgs = pulse_tick(shard)
                    if orgs:
                        last_busy = started
                    ops_pulse_tick(
                        started=time.time(),
                        seconds=time.monotonic() - started,
                        orgs=orgs,
                        interval=interval,
                    )
                    close_old_connections()
                    outage.ok()
                except TRANSIENT as exc:
                    if wake is not None:
                        wake.close()
                    wake = None
                    # What was published during the outage may never have reached a socket (a
                    # hub that lost Redis closes its sockets): send every fragment again.
                    forget_published()
                    outage.sleep(exc)
        except KeyboardInterrupt:
            with contextlib.suppress(*TRANSIENT):
                shard.leave()
            self.stdout.write("pulse: stopped")

    @staticmethod
    def _subscribe():
        pubsub = get_redis().pubsub()
        pubsub.subscribe(wake_channel())
        return pubsub
