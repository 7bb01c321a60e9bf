"""python manage.py simulate --org acme --rate 50 [--duration 60] [--url http://127.0.0.1:8000]

Sends realistic live traffic through the real HTTP API: conversations that start, exchange
messages with realistic delays and response times and end with a status, CSAT and call outcome;
AI employees making calls, bookings, emails and tasks; campaign queue-depth gauges.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import random
import signal
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

import orjson
from django.core.management.base import BaseCommand, CommandError

from analytics.models import Bot, Campaign, Organization
from analytics.services.api_keys import api_key_create, api_key_revoke
from analytics.services.demo import (
    ACTIVITY_TEXT,
    CALL_OUTCOMES,
    EXCHANGES,
    FIRST,
    LAST,
)
from analytics.synthetic import pick_weighted
from config.outage import TRANSIENT, Outage, describe

log = logging.getLogger("botflow.simulate")

EVENTS_PER_CONVERSATION = 7.0  # start + ~2.5 exchanges + end, on average


class Simulator:
    """Schedules future events in a heap and hands out those that are due."""

    def __init__(self, bots: list[Bot], campaigns: list[Campaign], rate: float, rng: random.Random):
        self.rng, self.rate = rng, rate
        self.chat_bots = [b for b in bots if b.kind != Bot.Kind.VOICE] or bots
        self.employees = [b for b in bots if b.kind == Bot.Kind.AI_EMPLOYEE]
        self.voice = [b for b in bots if b.kind == Bot.Kind.VOICE]
        self.campaigns = [c for c in campaigns if c.status == Campaign.Status.ACTIVE]
        self.queue: list[tuple[float, int, dict]] = []
        self.counter = itertools.count()
        self.depth = {c.slug: rng.uniform(80, 200) for c in self.campaigns}
        self.next_gauge = 0.0

    def _at(self, when: float, event: dict) -> None:
        heapq.heappush(self.queue, (when, next(self.counter), event))

    def _customer(self) -> str:
        return f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"

    def start_conversation(self, now: float) -> None:
        rng = self.rng
        campaign = None
        if self.voice and self.campaigns and rng.random() < 0.25:
            bot, campaign = rng.choice(self.voice), rng.choice(self.campaigns)
        else:
            bot = rng.choice(self.chat_bots)
        conv = f"sim-{uuid.uuid4().hex[:12]}"
        base = {"bot": bot.slug, "conversation": conv}
        start = {
            **base,
            "type": "conversation.started",
            "customer": self._customer(),
            "channel": bot.channel,
        }
        if campaign:
            start["campaign"] = campaign.slug
        self._at(now, start)
        outcome = pick_weighted(rng, CALL_OUTCOMES) if campaign else ""
        exchanges = (
            0
            if outcome in ("no_answer", "busy", "failed")
            else 1 + min(int(rng.expovariate(1 / 2)), 8)
        )
        t, bad = now + rng.uniform(0.5, 3), 0
        for _ in range(exchanges):
            question, answer = rng.choice(EXCHANGES)
            self._at(t, {**base, "type": "message", "direction": "inbound", "text": question})
            rt = min(
                60_000,
                int(
                    rng.lognormvariate(math.log(850), 0.55)
                    * (rng.uniform(3, 8) if rng.random() < 0.03 else 1)
                ),
            )
            t += rt / 1000
            result = pick_weighted(rng, [("success", 0.9), ("failed", 0.05), ("fallback", 0.05)])
            bad += result != "success"
            tokens = rng.randint(120, 650)
            self._at(
                t,
                {
                    **base,
                    "type": "message",
                    "direction": "outbound",
                    "text": answer,
                    "response_time_ms": rt,
                    "outcome": result,
                    "tokens": tokens,
                    "cost_usd": round(tokens * 0.0000025, 6),
                    "kb_hit": None if result == "failed" else rng.random() < 0.72,
                },
            )
            t += rng.uniform(4, 25)
        status = pick_weighted(
            rng,
            [
                ("resolved", 0.78 - 0.15 * bad),
                ("unresolved", 0.13 + 0.08 * bad),
                ("escalated", 0.09 + 0.07 * bad),
            ],
        )
        end = {
            **base,
            "type": "conversation.ended",
            "status": status,
            "handoff": status == "escalated",
        }
        if exchanges and rng.random() < 0.4:
            end["csat"] = max(
                1,
                min(
                    5,
                    round(
                        rng.gauss({"resolved": 4.4, "unresolved": 2.6, "escalated": 3}[status], 0.8)
                    ),
                ),
            )
        if outcome:
            end["call_outcome"] = outcome
        self._at(t, end)

    def tick(self, now: float, dt: float) -> list[dict]:
        """The events due at `now`, after scheduling `dt` seconds worth of new traffic."""
        rng = self.rng
        starts = self.rate * dt / EVENTS_PER_CONVERSATION
        for _ in range(int(starts) + (rng.random() < starts - int(starts))):
            self.start_conversation(now + rng.uniform(0, dt))
        if self.employees:
            acts = self.rate * dt * 0.04
            for _ in range(int(acts) + (rng.random() < acts - int(acts))):
                bot, kind = (
                    rng.choice(self.employees),
                    rng.choice(["call", "call", "booking", "email", "task"]),
                )
                customer = self._customer()
                event = {
                    "type": "activity",
                    "bot": bot.slug,
                    "kind": kind,
                    "customer": customer,
                    "description": rng.choice(ACTIVITY_TEXT[kind]).format(c=customer),
                }
                if kind == "booking":
                    event["value"] = rng.choice([80, 120, 150, 220, 350, 480])
                self._at(now, event)
        if now >= self.next_gauge and self.campaigns:
            self.next_gauge = now + 5
            for c in self.campaigns:
                self.depth[c.slug] = max(0.0, self.depth[c.slug] + rng.gauss(-1, 6))
                bot = c.bot or (self.voice[0] if self.voice else self.chat_bots[0])
                self._at(
                    now,
                    {
                        "type": "gauge",
                        "bot": bot.slug,
                        "name": "queue_depth",
                        "value": round(self.depth[c.slug]),
                        "campaign": c.slug,
                    },
                )
        due = []
        while self.queue and self.queue[0][0] <= now and len(due) < 1000:
            when, _, event = heapq.heappop(self.queue)
            due.append(
                {
                    **event,
                    "id": str(uuid.uuid4()),
                    "timestamp": datetime.fromtimestamp(when, UTC).isoformat(),
                }
            )
        return due


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Send realistic live bot traffic for an org through the HTTP API."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--rate", type=float, default=50, help="events per second (default 50)")
        parser.add_argument(
            "--duration", type=float, default=0, help="seconds to run (default: until stopped)"
        )
        parser.add_argument(
            "--url",
            default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}",
            help="base URL of the web process",
        )
        parser.add_argument(
            "--key",
            default=os.environ.get("BOTFLOW_API_KEY", ""),
            help="an ingest API key (default: a temporary key, revoked at exit)",
        )
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, org, rate, duration, url, key, seed, **options):
        if not 0 < rate <= 20_000:
            raise CommandError("--rate must be above 0 and at most 20,000 events/s.")
        if not url.startswith(("http://", "https://")):
            raise CommandError(f"--url must start with http:// or https:// (got {url!r}).")
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"--org: no organization with slug {org!r}.")
        bots = list(Bot.objects.for_org(organization))
        if not bots:
            raise CommandError(
                f"Organization {org!r} has no bots; run seed_demo or add one in admin."
            )
        campaigns = list(Campaign.objects.for_org(organization).select_related("bot"))
        temporary = None
        if not key:
            temporary = api_key_create(
                organization=organization, name=f"simulator-{uuid.uuid4().hex[:6]}", scopes="ingest"
            )
            key = temporary.secret
        sim = Simulator(bots, campaigns, rate, random.Random(seed))
        self.outage = Outage(f"simulator -> {url}", logger=log)
        self.deadline = time.time() + duration if duration else math.inf
        signal.signal(
            signal.SIGTERM, _interrupt
        )  # stop at once, even mid-retry; the key is revoked
        endpoint = url.rstrip("/") + "/api/v1/events"
        self.stdout.write(f"simulating {rate:g} events/s for {org} -> {endpoint} (Ctrl-C stops)")
        totals = {"sent": 0, "accepted": 0, "rejected": 0, "failed_requests": 0}
        started = last = last_report = time.time()
        try:
            while not duration or time.time() - started < duration:
                time.sleep(0.5)
                now = time.time()
                # After a wait on the API, go on at the usual rate instead of a catch-up burst.
                events = sim.tick(now, min(now - last, 2.0))
                last = now
                if events:
                    self._send(endpoint, key, events, totals)
                if now - last_report >= 10:
                    last_report = now
                    self.stdout.write(
                        f"sent {totals['sent']:,} · accepted {totals['accepted']:,} · "
                        f"rejected {totals['rejected']:,} · failed requests {totals['failed_requests']:,}"
                    )
        except KeyboardInterrupt:
            pass
        finally:
            if temporary is not None:
                try:
                    api_key_revoke(api_key=temporary.api_key)
                except TRANSIENT as exc:
                    self.stderr.write(
                        f"the temporary key {temporary.api_key.prefix} was not "
                        f"revoked ({describe(exc)}); revoke it in admin"
                    )
        self.stdout.write(f"done: sent {totals['sent']:,}, accepted {totals['accepted']:,}")

    def _send(self, endpoint: str, key: str, events: list[dict], totals: dict) -> None:
        body = orjson.dumps({"events": events})
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in handle()
            endpoint,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        # Retried until the API takes the batch (the same ids on retry: the API dedupes them):
        # an outage of the web process or its database delays events, it never drops them.
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own URL
                    result = orjson.loads(response.read())
                totals["sent"] += len(events)
                totals["accepted"] += result["accepted"]
                totals["rejected"] += len(result["rejected"])
                self.outage.ok()
                return
            except urllib.error.HTTPError as exc:
                if exc.code not in (429, 503):
                    self.stderr.write(f"the API answered {exc.code}: {exc.read()[:300]!r}")
                    totals["failed_requests"] += 1
                    return
                failure = exc
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                failure = exc
            if time.time() >= self.deadline:  # --duration ran out while the API was unreachable
                totals["failed_requests"] += 1
                return
            self.outage.sleep(failure)
