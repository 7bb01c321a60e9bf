"""Reads of the live state in Redis (layout in analytics/live_keys.py): the live cards, feeds,
gauges, AI-employee cards and minute series."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from django.utils import timezone

from analytics import sketch
from analytics.live_keys import (
    ACTIVE_WINDOW,
    COST_MICRO_USD,
    COUNTER_FIELDS,
    FAIL,
    FALLBACK,
    IN,
    OK,
    OUT,
    RT_COUNT,
    RT_SUM_MS,
    TOKENS,
    bot_key,
    epoch_minute,
    org_key,
)
from analytics.models import Bot, Organization
from analytics.redis import get_redis


@dataclass(frozen=True)
class LiveFigure:
    value: float | None
    previous: float | None

    @property
    def change(self) -> float | None:
        """Relative change against the previous hour, in percent (None when not comparable)."""
        if self.value is None or not self.previous:
            return None
        return 100.0 * (self.value - self.previous) / self.previous


@dataclass(frozen=True)
class LiveSnapshot:
    active_now: int
    messages_last_hour: LiveFigure
    avg_response_ms: LiveFigure
    p50_response_ms: LiveFigure
    p95_response_ms: LiveFigure
    p99_response_ms: LiveFigure
    success_rate: LiveFigure  # percent of outbound replies with outcome success
    tokens_last_hour: LiveFigure
    cost_last_hour_usd: LiveFigure


def _hour_figures(counters: list[dict], hists: list[dict]) -> dict[str, float | None]:
    totals = dict.fromkeys(COUNTER_FIELDS, 0)
    for c in counters:
        for name, value in c.items():
            name = name.decode() if isinstance(name, bytes) else name
            if name in totals:
                totals[name] += int(value)
    p50, p95, p99 = sketch.quantiles(sketch.merge(hists), (0.5, 0.95, 0.99))
    replies = totals[OK] + totals[FAIL] + totals[FALLBACK]
    return {
        "messages": totals[IN] + totals[OUT],
        "avg": totals[RT_SUM_MS] / totals[RT_COUNT] if totals[RT_COUNT] else None,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "success": 100.0 * totals[OK] / replies if replies else None,
        "tokens": totals[TOKENS],
        "cost": totals[COST_MICRO_USD] / 1_000_000,
    }


def live_snapshot(
    *, org: Organization, bot: Bot | None = None, now: datetime | None = None
) -> LiveSnapshot:
    """Live figures for an org (or one of its bots): last 60 minutes against the 60 before."""
    now = now or timezone.now()
    if bot is not None and bot.organization_id != org.pk:
        raise ValueError("bot is not in this organization")
    key = (
        (lambda *parts: bot_key(org.pk, bot.pk, *parts))
        if bot
        else (lambda *parts: org_key(org.pk, *parts))
    )
    current = epoch_minute(now)
    hours = (range(current - 119, current - 59), range(current - 59, current + 1))
    # previous hour, then the last hour: summed inside Redis (240 hashes were parsed in Python)
    (previous, last) = (
        _hour_figures([dict(zip(COUNTER_FIELDS, counts, strict=True))], [hist])
        for counts, hist in live_sums(
            [[(key("m", m), key("h", m)) for m in minutes] for minutes in hours], COUNTER_FIELDS
        )
    )
    active = get_redis().zcount(key("active"), (now - ACTIVE_WINDOW).timestamp(), "+inf")

    def figure(name: str) -> LiveFigure:
        return LiveFigure(last[name], previous[name])

    return LiveSnapshot(
        active_now=int(active),
        messages_last_hour=figure("messages"),
        avg_response_ms=figure("avg"),
        p50_response_ms=figure("p50"),
        p95_response_ms=figure("p95"),
        p99_response_ms=figure("p99"),
        success_rate=figure("success"),
        tokens_last_hour=figure("tokens"),
        cost_last_hour_usd=figure("cost"),
    )


def live_feed(*, org: Organization, limit: int = 10) -> list[dict]:
    """The latest conversation events, newest first (customer text is untrusted: escape it)."""
    return [
        orjson.loads(item) for item in get_redis().lrange(org_key(org.pk, "feed"), 0, limit - 1)
    ]


def live_stream_window(*, org: Organization) -> list[tuple[str, bytes]]:
    """Every entry of the org's feed and activity lists as stored, ("feed" | "acts", JSON),
    oldest first within each: what the API stream may still have to send."""
    pipe = get_redis().pipeline(transaction=False)
    pipe.lrange(org_key(org.pk, "feed"), 0, -1)
    pipe.lrange(org_key(org.pk, "acts"), 0, -1)
    feed, acts = pipe.execute()
    return [("feed", e) for e in reversed(feed)] + [("acts", e) for e in reversed(acts)]


def live_activities(*, org: Organization, limit: int = 50) -> list[dict]:
    """The latest AI-employee activities, newest first."""
    return [
        orjson.loads(item) for item in get_redis().lrange(org_key(org.pk, "acts"), 0, limit - 1)
    ]


def live_gauges(*, org: Organization) -> dict[str, dict]:
    """Latest value of each gauge, keyed "{campaign slug}:{name}" (campaign empty for org-wide)."""
    raw = get_redis().hgetall(org_key(org.pk, "gauges"))
    return {key.decode(): orjson.loads(value) for key, value in raw.items()}


@dataclass(frozen=True)
class EmployeeCard:
    bot: Bot
    status: str  # "active" (activity within 10 min or a live conversation), "idle" (1 h), "offline"
    calls: int
    bookings: int
    emails: int
    tasks: int
    revenue: float
    latest: dict | None  # the newest activity of this employee, from the live feed


def ai_employee_cards(*, org: Organization, now: datetime | None = None) -> list[EmployeeCard]:
    """Every AI employee of the org with today's activity counts (org time zone) and status."""
    now = now or timezone.now()
    employees = list(Bot.objects.for_org(org).filter(kind=Bot.Kind.AI_EMPLOYEE).order_by("name"))
    if not employees:
        return []
    today = now.astimezone(org.tz).strftime("%Y%m%d")
    since_active = (now - ACTIVE_WINDOW).timestamp()
    pipe = get_redis().pipeline(transaction=False)
    for bot in employees:
        pipe.hgetall(bot_key(org.pk, bot.pk, "d", today))
        pipe.zcount(bot_key(org.pk, bot.pk, "active"), since_active, "+inf")
    pipe.lrange(org_key(org.pk, "acts"), 0, -1)
    replies = pipe.execute()
    latest: dict[str, dict] = {}
    for raw in replies[-1]:
        item = orjson.loads(raw)
        latest.setdefault(item["bot"], item)
    cards = []
    for i, bot in enumerate(employees):
        day = {k.decode(): int(v) for k, v in replies[2 * i].items()}
        live_conversations = replies[2 * i + 1]
        idle_for = now.timestamp() - day.get("last_ts", 0)
        if live_conversations or idle_for < 600:
            status = "active"
        elif idle_for < 3600:
            status = "idle"
        else:
            status = "offline"
        cards.append(
            EmployeeCard(
                bot=bot,
                status=status,
                calls=day.get("call", 0),
                bookings=day.get("booking", 0),
                emails=day.get("email", 0),
                tasks=day.get("task", 0),
                revenue=day.get("revenue_c", 0) / 100,
                latest=latest.get(bot.slug),
            )
        )
    return cards


@dataclass(frozen=True)
class MinutePoint:
    minute: datetime
    messages: int
    p95_ms: float | None


def live_minute_series(
    *, org: Organization, bot: Bot | None = None, points: int = 20, now: datetime | None = None
) -> list[MinutePoint]:
    """Messages per minute and p95 response time for the last `points` minutes (oldest first),
    for the org or one of its bots."""
    now = now or timezone.now()
    if bot is not None and bot.organization_id != org.pk:
        raise ValueError("bot is not in this organization")
    key = functools.partial(bot_key, org.pk, bot.pk) if bot else functools.partial(org_key, org.pk)
    current = epoch_minute(now)
    minutes = range(current - points + 1, current + 1)
    pipe = get_redis().pipeline(transaction=False)
    for minute in minutes:
        pipe.hmget(key("m", minute), IN, OUT)
        pipe.hgetall(key("h", minute))
    replies = pipe.execute()
    series = []
    for i, minute in enumerate(minutes):
        inbound, outbound = replies[2 * i]
        (p95,) = sketch.quantiles(sketch.merge([replies[2 * i + 1]]), (0.95,))
        messages = int(inbound or 0) + int(outbound or 0)
        series.append(MinutePoint(datetime.fromtimestamp(minute * 60, tz=UTC), messages, p95))
    return series


def ingest_rate_per_minute(*, org: Organization, now: datetime | None = None) -> int:
    """Messages received and sent in the last full minute."""
    minute = epoch_minute(now or timezone.now()) - 1
    inbound, outbound = get_redis().hmget(org_key(org.pk, "m", minute), IN, OUT)
    return int(inbound or 0) + int(outbound or 0)


# The fields live_sums() sums by default, in the order Totals.add() takes them.
_LIVE_FIELDS = (IN, OUT, OK, FAIL, FALLBACK, RT_COUNT, RT_SUM_MS)


# Sums the counters (and merges the histograms) of many minute keys inside Redis, one group of
# keys per result: a page reads hundreds of minute hashes, and parsing each reply in Python cost
# more than everything else it does. (One script call touches keys of one org only.)
_SUM_MINUTES = """
local nf = tonumber(ARGV[1])
local with_hist = ARGV[2] == '1'
local fields = {unpack(ARGV, 3, 2 + nf)}
local out, k = {}, 1
for g = 3 + nf, #ARGV do
  local sums, hist = {}, {}
  for f = 1, nf do sums[f] = 0 end
  for _ = 1, tonumber(ARGV[g]) do
    local values = redis.call('HMGET', KEYS[k], unpack(fields))
    for f = 1, nf do sums[f] = sums[f] + (tonumber(values[f]) or 0) end
    k = k + 1
    if with_hist then
      local h = redis.call('HGETALL', KEYS[k])
      for j = 1, #h, 2 do hist[h[j]] = (hist[h[j]] or 0) + tonumber(h[j + 1]) end
      k = k + 1
    end
  end
  local flat = {}
  for bucket, n in pairs(hist) do flat[#flat + 1] = bucket; flat[#flat + 1] = n end
  out[#out + 1] = sums
  out[#out + 1] = flat
end
return out
"""


def live_sums(
    groups: list[list[tuple[str, str | None]]], fields: tuple[str, ...] = _LIVE_FIELDS
) -> list[tuple[list[int], dict]]:
    """For each group of (counter key, histogram key or None) minute keys: the summed counter
    `fields` and the merged histogram."""
    hists = any(h is not None for group in groups for _m, h in group)
    keys = [k for group in groups for m, h in group for k in ((m, h) if hists else (m,))]
    if not keys:
        return [([0] * len(fields), {}) for _ in groups]
    args = [len(fields), int(hists), *fields, *(len(g) for g in groups)]
    reply = get_redis().eval(_SUM_MINUTES, len(keys), *keys, *args)
    results = []
    for i in range(len(groups)):
        flat = reply[2 * i + 1]
        hist = {int(flat[j]): int(flat[j + 1]) for j in range(0, len(flat), 2)}
        results.append(([int(v) for v in reply[2 * i]], hist))
    return results
