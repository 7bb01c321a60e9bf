"""Reads. Every function takes the organization explicitly and returns plain data or querysets."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import orjson
import redis
from django.db import connection
from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from analytics import sketch
from analytics.models import (
    Activity,
    Bot,
    BotDailyMetrics,
    BotHourlyRollup,
    Campaign,
    Conversation,
    Direction,
    Message,
    Organization,
    Outcome,
    RollupDirtyDay,
)
from analytics.redis import get_redis
from analytics.services.live import (
    ACTIVE_WINDOW,
    MINUTE_TTL,
    bot_key,
    epoch_minute,
    org_bot_ids,
    org_key,
)


def org_day_start(org: Organization, now: datetime | None = None) -> datetime:
    """Midnight today in the org's time zone, as an aware datetime."""
    local = (now or timezone.now()).astimezone(org.tz)
    return datetime.combine(local.date(), time.min, tzinfo=org.tz)


@dataclass(frozen=True)
class BotToday:
    bot: Bot
    conversations: int
    messages_in: int
    messages_out: int
    avg_response_ms: float | None
    success_rate: float | None  # percent of outbound messages with outcome "success"
    activities: int
    revenue: float


def bot_today_list(*, org: Organization, now: datetime | None = None) -> list[BotToday]:
    """Every bot of the org with today's counts (org time zone).

    Completed hours come from the hourly rollups; the rest of the day (the current hour, an hour
    not rolled up yet) from the live minute counters for messages and from those few hours' rows
    for conversations and activities, so the cost does not grow with the day's traffic.
    """
    now = now or timezone.now()
    since = org_day_start(org, now)
    bots = list(Bot.objects.for_org(org).order_by("kind", "name"))
    ids = [b.pk for b in bots]
    totals = {pk: _Totals() for pk in ids}
    conversations = dict.fromkeys(ids, 0)
    activities = dict.fromkeys(ids, 0)
    revenue = dict.fromkeys(ids, Decimal(0))
    rows = list(
        BotHourlyRollup.objects.for_org(org)
        .filter(bot_id__in=ids, hour__gte=since, hour__lt=_floor_hour(now))
        .values_list(
            "hour", "bot_id", "messages_in", "messages_out", "successes", "failures", "fallbacks",
            "response_count", "response_sum_ms", "conversations_started",
            "calls", "bookings", "emails", "tasks", "revenue",
        )
    )  # fmt: skip
    stale = _stale_hours(org, since, now) if rows else set()
    rolled: set[datetime] = set()
    for row in rows:
        hour, bot_id, *counts, started, calls, bookings, emails, tasks, value = row
        if hour in stale:
            continue
        rolled.add(hour)
        totals[bot_id].add(*counts)
        conversations[bot_id] += started
        activities[bot_id] += calls + bookings + emails + tasks
        revenue[bot_id] += value
    tail = _unrolled_ranges(since, now, rolled)
    if tail:
        in_tail, started_in_tail = Q(), Q()
        for a, b in tail:
            in_tail |= Q(created_at__gte=a, created_at__lt=b)
            started_in_tail |= Q(started_at__gte=a, started_at__lt=b)
        _today_messages_tail(org, ids, tail, in_tail, totals)
        for bot_id, n in (
            Conversation.objects.for_org(org)
            .filter(started_in_tail, bot_id__in=ids)
            .values_list("bot_id")
            .annotate(n=Count("id"))
        ):
            conversations[bot_id] += n
        for bot_id, n, value in (
            Activity.objects.for_org(org)
            .filter(in_tail, bot_id__in=ids)
            .values_list("bot_id")
            .annotate(n=Count("id"), revenue=Sum("value"))
        ):
            activities[bot_id] += n
            revenue[bot_id] += value or 0
    result = []
    for bot in bots:
        t = totals[bot.pk]
        replies = t.ok + t.fail + t.fb
        result.append(
            BotToday(
                bot=bot,
                conversations=conversations[bot.pk],
                messages_in=t.inbound,
                messages_out=t.outbound,
                avg_response_ms=t.rt_sum / t.rt_n if t.rt_n else None,
                success_rate=100.0 * t.ok / replies if replies else None,
                activities=activities[bot.pk],
                revenue=float(revenue[bot.pk]),
            )
        )
    return result


def _unrolled_ranges(
    since: datetime, now: datetime, rolled: set[datetime]
) -> list[tuple[datetime, datetime]]:
    """The [start, end) ranges from `since` to now that lie outside the rolled-up hours."""
    ranges: list[tuple[datetime, datetime]] = []
    hour, end = _floor_hour(since), now + timedelta(minutes=1)
    while hour < end:
        if hour not in rolled:
            a, b = max(hour, since), min(hour + HOUR, end)
            if ranges and ranges[-1][1] == a:
                ranges[-1] = (ranges[-1][0], b)
            else:
                ranges.append((a, b))
        hour += HOUR
    return ranges


def _today_messages_tail(org, ids, tail, in_tail, totals) -> None:
    """Add the live minute counters of each bot over `tail`; the message rows if Redis is down."""
    minutes = [
        m
        for a, b in tail
        for m in range(epoch_minute(a), epoch_minute(b - timedelta(microseconds=1)) + 1)
    ]
    if org.live_stale_since is None:
        try:
            groups = [[(bot_key(b, "m", m), None) for m in minutes] for b in ids]
            for bot_id, (counts, _hist) in zip(ids, _live_sums(groups), strict=True):
                totals[bot_id].add(*counts)
            return
        except redis.RedisError:
            pass  # the same figures from the (few) message rows of those minutes
    for row in (
        Message.objects.for_org(org)
        .filter(in_tail, bot_id__in=ids)
        .values("bot_id")
        .annotate(
            inbound=Count("id", filter=Q(direction=Direction.INBOUND)),
            outbound=Count("id", filter=Q(direction=Direction.OUTBOUND)),
            ok=Count(
                "id", filter=Q(direction=Direction.OUTBOUND, outcome__in=("", Outcome.SUCCESS))
            ),
            fail=Count("id", filter=Q(direction=Direction.OUTBOUND, outcome=Outcome.FAILED)),
            fb=Count("id", filter=Q(direction=Direction.OUTBOUND, outcome=Outcome.FALLBACK)),
            rt_n=Count("response_time_ms"),
            rt_sum=Sum("response_time_ms", default=0),
        )
    ):
        totals[row.pop("bot_id")].add(**row)


# --- live state (Redis) ------------------------------------------------------------------------

LIVE_FIELDS = (
    "in",
    "out",
    "ok",
    "fail",
    "fb",
    "tok",
    "cost_u",
    "rt_n",
    "rt_sum",
    "cs",
    "ce",
    "esc",
)


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
    totals = dict.fromkeys(LIVE_FIELDS, 0)
    for c in counters:
        for name, value in c.items():
            name = name.decode() if isinstance(name, bytes) else name
            if name in totals:
                totals[name] += int(value)
    p50, p95, p99 = sketch.quantiles(sketch.merge(hists), (0.5, 0.95, 0.99))
    replies = totals["ok"] + totals["fail"] + totals["fb"]
    return {
        "messages": totals["in"] + totals["out"],
        "avg": totals["rt_sum"] / totals["rt_n"] if totals["rt_n"] else None,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "success": 100.0 * totals["ok"] / replies if replies else None,
        "tokens": totals["tok"],
        "cost": totals["cost_u"] / 1_000_000,
    }


def live_snapshot(
    *, org: Organization, bot: Bot | None = None, now: datetime | None = None
) -> LiveSnapshot:
    """Live figures for an org (or one of its bots): last 60 minutes against the 60 before."""
    now = now or timezone.now()
    if bot is not None and bot.organization_id != org.pk:
        raise ValueError("bot is not in this organization")
    key = (
        (lambda *parts: bot_key(bot.pk, *parts))
        if bot
        else (lambda *parts: org_key(org.pk, *parts))
    )
    current = epoch_minute(now)
    hours = (range(current - 119, current - 59), range(current - 59, current + 1))
    # previous hour, then the last hour: summed inside Redis (240 hashes were parsed in Python)
    (previous, last) = (
        _hour_figures([dict(zip(LIVE_FIELDS, counts, strict=True))], [hist])
        for counts, hist in _live_sums(
            [[(key("m", m), key("h", m)) for m in minutes] for minutes in hours], LIVE_FIELDS
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
        pipe.hgetall(bot_key(bot.pk, "d", today))
        pipe.zcount(bot_key(bot.pk, "active"), since_active, "+inf")
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
        cards.append(EmployeeCard(
            bot=bot, status=status, calls=day.get("call", 0), bookings=day.get("booking", 0),
            emails=day.get("email", 0), tasks=day.get("task", 0), revenue=day.get("revenue_c", 0) / 100,
            latest=latest.get(bot.slug),
        ))  # fmt: skip
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
    key = functools.partial(bot_key, bot.pk) if bot else functools.partial(org_key, org.pk)
    current = epoch_minute(now)
    minutes = range(current - points + 1, current + 1)
    pipe = get_redis().pipeline(transaction=False)
    for minute in minutes:
        pipe.hmget(key("m", minute), "in", "out")
        pipe.hgetall(key("h", minute))
    replies = pipe.execute()
    series = []
    for i, minute in enumerate(minutes):
        inbound, outbound = replies[2 * i]
        (p95,) = sketch.quantiles(sketch.merge([replies[2 * i + 1]]), (0.95,))
        messages = int(inbound or 0) + int(outbound or 0)
        series.append(MinutePoint(datetime.fromtimestamp(minute * 60, tz=UTC), messages, p95))
    return series


CALL_OUTCOME_ORDER = ("answered", "converted", "busy", "no_answer", "failed", "opt_out")


@dataclass(frozen=True)
class CampaignStatus:
    campaign: Campaign
    attempts: int  # calls started today (org time zone)
    outcomes: dict[str, int]
    active_calls: int
    dialing_per_min: float  # calls started over the last 10 minutes, per minute
    queue_depth: float | None  # latest `queue_depth` gauge of the campaign

    @property
    def answer_rate(self) -> float | None:
        done = sum(self.outcomes.values())
        answered = self.outcomes.get("answered", 0) + self.outcomes.get("converted", 0)
        return 100.0 * answered / done if done else None

    @property
    def conversion_rate(self) -> float | None:
        done = sum(self.outcomes.values())
        return 100.0 * self.outcomes.get("converted", 0) / done if done else None


def campaign_status_list(*, org: Organization, now: datetime | None = None) -> list[CampaignStatus]:
    """Today's calls, outcomes and live queue of every campaign of the org (active ones first)."""
    now = now or timezone.now()
    campaigns = list(Campaign.objects.for_org(org).order_by("status", "name"))
    if not campaigns:
        return []
    # campaign = each id (not "is not null"): the (organization, campaign, started_at) index then
    # reads only today's rows of each campaign, not every call the campaigns ever made.
    conversations = Conversation.objects.for_org(org).filter(
        campaign_id__in=[c.pk for c in campaigns]
    )
    today = conversations.filter(started_at__gte=org_day_start(org, now))
    attempts = dict(today.values_list("campaign_id").annotate(n=Count("id")))
    outcomes: dict[int, dict[str, int]] = {}
    for campaign_id, outcome, n in (
        today.exclude(call_outcome="")
        .values_list("campaign_id", "call_outcome")
        .annotate(n=Count("id"))
    ):
        outcomes.setdefault(campaign_id, {})[outcome] = n
    active = dict(
        conversations.filter(ended_at__isnull=True, last_activity_at__gte=now - ACTIVE_WINDOW)
        .values_list("campaign_id")
        .annotate(n=Count("id"))
    )
    recent = dict(
        conversations.filter(started_at__gte=now - timedelta(minutes=10))
        .values_list("campaign_id")
        .annotate(n=Count("id"))
    )
    gauges = live_gauges(org=org)
    return [
        CampaignStatus(
            campaign=c,
            attempts=attempts.get(c.pk, 0),
            outcomes={o: outcomes.get(c.pk, {}).get(o, 0) for o in CALL_OUTCOME_ORDER},
            active_calls=active.get(c.pk, 0),
            dialing_per_min=recent.get(c.pk, 0) / 10,
            queue_depth=(gauges.get(f"{c.slug}:queue_depth") or {}).get("value"),
        )
        for c in campaigns
    ]


def ingest_rate_per_minute(*, org: Organization, now: datetime | None = None) -> int:
    """Messages received and sent in the last full minute."""
    minute = epoch_minute(now or timezone.now()) - 1
    inbound, outbound = get_redis().hmget(org_key(org.pk, "m", minute), "in", "out")
    return int(inbound or 0) + int(outbound or 0)


# --- chart series: hourly rollups for completed hours, live minute counters for the rest -------
#
# A completed UTC hour the org has BotHourlyRollup rows for is read from those rows (histograms
# merged, never a percentile over raw messages); every other minute of the range (the current
# hour, a recent hour not rolled up yet) comes from the live minute keys in Redis, which keep
# three days. An hour found in neither is a gap.

HOUR = timedelta(hours=1)
_LIVE_FIELDS = ("in", "out", "ok", "fail", "fb", "rt_n", "rt_sum")


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    bucket_hours: int  # 1 or 3 (aligned to the org's clock) or 24 (a calendar day, org time zone)
    buckets: int


PERIODS = {
    p.key: p
    for p in (
        Period("24h", "Last 24 hours", 1, 24),
        Period("7d", "Last 7 days", 3, 56),
        Period("30d", "Last 30 days", 24, 30),
    )
}
DEFAULT_PERIOD = PERIODS["24h"]


def period_get(key: str | None) -> Period:
    """The period named `key` ("24h", "7d" or "30d"); the default period for anything else."""
    return PERIODS.get(key or "", DEFAULT_PERIOD)


@dataclass(frozen=True)
class ResponseTimePoint:
    start: datetime  # start of the bucket, in the org's time zone
    responses: int  # replies that carried a response time
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class VolumePoint:
    start: datetime
    inbound: int
    outbound: int


@dataclass
class _Totals:
    inbound: int = 0
    outbound: int = 0
    ok: int = 0
    fail: int = 0
    fb: int = 0
    rt_n: int = 0
    rt_sum: int = 0
    hists: list = None  # histograms to merge with sketch.merge

    def add(self, inbound=0, outbound=0, ok=0, fail=0, fb=0, rt_n=0, rt_sum=0, hist=None):
        self.inbound += inbound
        self.outbound += outbound
        self.ok += ok
        self.fail += fail
        self.fb += fb
        self.rt_n += rt_n
        self.rt_sum += rt_sum
        if hist:
            self.hists = [*(self.hists or ()), hist]


def _floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _period_buckets(
    org: Organization, period: Period, now: datetime
) -> tuple[list[datetime], dict[datetime, int]]:
    """Bucket starts (org time zone, oldest first) and the bucket index of each UTC hour."""
    tz, current = org.tz, _floor_hour(now)
    span = (period.buckets + 1) * period.bucket_hours + 2  # a spare bucket and DST slack
    keyed: dict[object, list[datetime]] = {}
    for i in range(span - 1, -1, -1):
        hour = current - i * HOUR
        local = hour.astimezone(tz)
        if period.bucket_hours == 1:
            key = hour  # two UTC hours can share a local wall-clock hour (DST ends)
        elif period.bucket_hours == 24:
            key = local.date()
        else:
            key = (local.date(), local.hour // period.bucket_hours)
        keyed.setdefault(key, []).append(hour)
    starts, index = [], {}
    for key in list(keyed)[-period.buckets :]:
        hours = keyed[key]
        if period.bucket_hours == 1:
            start = key.astimezone(tz)
        elif period.bucket_hours == 24:
            start = datetime.combine(key, time.min, tzinfo=tz)
        else:
            start = datetime.combine(key[0], time(key[1] * period.bucket_hours), tzinfo=tz)
        for hour in hours:
            index[hour] = len(starts)
        starts.append(start)
    return starts, index


def _scoped_bot_ids(org: Organization, bots) -> tuple[list[int], list[int] | None]:
    """All bot ids of the org, and the ids asked for (None: the whole org)."""
    all_ids = org_bot_ids(org)
    if bots is None:
        return all_ids, None
    wanted = [b if isinstance(b, int) else b.pk for b in bots]
    if not set(wanted) <= set(all_ids):
        raise ValueError("bot is not in this organization")
    return all_ids, wanted


def _rolled_up_hours(
    org: Organization, all_ids: list[int], wanted: list[int] | None, first, last, now
) -> dict[datetime, _Totals]:
    """Completed hours (first..last) the org has rollup rows for, with the wanted bots' counts."""
    mine = Q() if wanted is None else Q(bot_id__in=wanted)
    rows = (
        BotHourlyRollup.objects.for_org(org)
        .filter(bot_id__in=all_ids, hour__gte=first, hour__lte=last, hour__lt=_floor_hour(now))
        .values("hour")
        .annotate(
            inbound=Sum("messages_in", filter=mine, default=0),
            outbound=Sum("messages_out", filter=mine, default=0),
            ok=Sum("successes", filter=mine, default=0),
            fail=Sum("failures", filter=mine, default=0),
            fb=Sum("fallbacks", filter=mine, default=0),
            rt_n=Sum("response_count", filter=mine, default=0),
            rt_sum=Sum("response_sum_ms", filter=mine, default=0),
        )
    )
    rolled = {row.pop("hour"): _Totals(**row) for row in rows}
    for hour in _stale_hours(org, first, now) if rolled else ():
        rolled.pop(hour, None)
    return rolled


def _bucket_sums(
    org: Organization, bot_ids: list[int], index: dict[datetime, int], first, last
) -> list[tuple]:
    """(bucket, inbound, outbound, ok, fail, fallback, responses, response ms) of the rolled-up
    hours first..last, summed per bucket in SQL."""
    table = BotHourlyRollup._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT width_bucket(hour, %(thresholds)s::timestamptz[]) - 1, sum(messages_in),
                sum(messages_out), sum(successes), sum(failures), sum(fallbacks),
                sum(response_count), sum(response_sum_ms)
            FROM {table}
            WHERE organization_id = %(org)s AND bot_id = ANY(%(bots)s)
              AND hour >= %(first)s AND hour <= %(last)s
            GROUP BY 1
            """,  # noqa: S608 - the table name is ours
            {"thresholds": _bucket_firsts(index), "org": org.pk, "bots": bot_ids,
             "first": first, "last": last},
        )  # fmt: skip
        return cursor.fetchall()


def _stale_hours(org: Organization, since: datetime, now: datetime) -> set[datetime]:
    """Rolled-up hours marked dirty again by late events, within the live keys' three days:
    those are read from the live minutes until the next hourly run rebuilds them."""
    from analytics.services.rollup import rollup_pending_hours

    start = max(_floor_hour(since), _floor_hour(now - timedelta(seconds=MINUTE_TTL)) + HOUR)
    return set(rollup_pending_hours(org_id=org.pk, start=start, end=_floor_hour(now)))


def _bucket_firsts(index: dict[datetime, int]) -> list[datetime]:
    """The first UTC hour of each bucket, in bucket order: with SQL's width_bucket() they map an
    hour to its bucket without sending every hour of the period."""
    firsts: dict[int, datetime] = {}
    for hour, idx in index.items():
        if idx not in firsts or hour < firsts[idx]:
            firsts[idx] = hour
    return [firsts[i] for i in range(len(firsts))]


def daily_hist_days(
    org: Organization, index: dict[datetime, int], hours: list[datetime]
) -> dict[object, int]:
    """Org-local days (-> bucket) whose every hour is among `hours`, in one bucket: their
    histogram can come from the day's BotDailyMetrics row instead of 23-25 hourly ones. Days
    whose bounds are not whole UTC hours (half-hour zones) would split hourly rows: left out."""
    from analytics.services.rollup import org_day_bounds

    wanted = set(hours)
    days = {}
    for day in sorted({h.astimezone(org.tz).date() for h in hours}):
        first, last = org_day_bounds(org, day)
        day_hours = [first + i * HOUR for i in range(round((last - first) / HOUR))]
        whole = first.minute == 0 and all(h in wanted for h in day_hours)
        if whole and len({index[h] for h in day_hours}) == 1:
            days[day] = index[first]
    return days


def _rollup_bucket_hists(
    org: Organization, bot_ids: list[int], index: dict[datetime, int], hours: list[datetime]
) -> dict[int, dict[int, int]]:
    """The response histograms of the rolled-up `hours`, summed per bucket (key-wise, as
    sketch.merge): a whole org-local day from its daily row (unless the day is marked for
    rebuilding, e.g. after late data), other hours from the hourly rows — 30 rows for 30 days
    instead of 720."""
    if not hours:
        return {}
    days = daily_hist_days(org, index, hours)
    thresholds = _bucket_firsts(index)
    first, last = min(hours), max(hours)
    wanted = set(hours)  # the rolled-up hours asked for; others in between are left out
    skipped = [h for h in index if first <= h <= last and h not in wanted]
    daily, hourly = BotDailyMetrics._meta.db_table, BotHourlyRollup._meta.db_table
    dirty = RollupDirtyDay._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH d AS (
                SELECT x.bot_id, x.date, x.response_hist, b.idx
                FROM {daily} x JOIN unnest(%(days)s::date[], %(day_idx)s::int[]) AS b(date, idx)
                    ON b.date = x.date
                WHERE x.organization_id = %(org)s AND x.bot_id = ANY(%(bots)s)
                  AND x.response_hist IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM {dirty} y
                                  WHERE y.organization_id = %(org)s AND y.date = x.date)
            ), hists AS (
                SELECT idx, response_hist FROM d
                UNION ALL
                SELECT width_bucket(r.hour, %(thresholds)s::timestamptz[]) - 1, r.response_hist
                FROM {hourly} r
                WHERE r.organization_id = %(org)s AND r.bot_id = ANY(%(bots)s)
                  AND r.hour >= %(first)s AND r.hour <= %(last)s
                  AND r.hour <> ALL(%(skipped)s::timestamptz[])
                  AND NOT EXISTS (SELECT 1 FROM d WHERE d.bot_id = r.bot_id
                                  AND d.date = (r.hour AT TIME ZONE %(tz)s)::date)
            )
            SELECT idx, h.key::int, sum(h.value::bigint)
            FROM hists CROSS JOIN LATERAL jsonb_each_text(hists.response_hist) AS h(key, value)
            GROUP BY 1, 2
            """,  # noqa: S608 - the table names are ours
            {"org": org.pk, "bots": bot_ids, "days": list(days), "day_idx": list(days.values()),
             "thresholds": thresholds, "skipped": skipped, "first": first, "last": last,
             "tz": org.timezone},
        )  # fmt: skip
        merged: dict[int, dict[int, int]] = {}
        for idx, bucket, count in cursor.fetchall():
            merged.setdefault(idx, {})[bucket] = int(count)
    return merged


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


def _live_sums(
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


def _bucket_totals(
    *, org: Organization, period: Period, bots, now: datetime | None, hists: bool, live: bool
) -> tuple[list[datetime], list[_Totals]]:
    now = now or timezone.now()
    starts, index = _period_buckets(org, period, now)
    all_ids, wanted = _scoped_bot_ids(org, bots)
    hours = sorted(index)
    ids = all_ids if wanted is None else wanted
    totals = [_Totals() for _ in starts]
    # Hours older than the live minute keys can only come from rollups: summed per bucket in
    # SQL. Recent ones are read hour by hour, to fill those not rolled up from the live minutes.
    live_from = _floor_hour(now - timedelta(seconds=MINUTE_TTL))
    older = [h for h in hours if h < live_from]
    recent = [h for h in hours if h >= live_from]
    rolled = _rolled_up_hours(org, all_ids, wanted, recent[0], recent[-1], now) if recent else {}
    for hour, t in rolled.items():
        if hour in index:
            totals[index[hour]].add(t.inbound, t.outbound, t.ok, t.fail, t.fb, t.rt_n, t.rt_sum)
    if older:
        for idx, *counts in _bucket_sums(org, ids, index, older[0], older[-1]):
            totals[idx].add(*counts)
    if hists:
        rolled_hours = older + [h for h in rolled if h in index]
        for idx, hist in _rollup_bucket_hists(org, ids, index, rolled_hours).items():
            totals[idx].add(hist=hist)
    horizon = epoch_minute(now) - MINUTE_TTL // 60
    current = epoch_minute(now)
    minutes = [
        m
        for hour in hours
        if hour not in rolled
        for m in range(epoch_minute(hour), epoch_minute(hour) + 60)
        if horizon < m <= current
    ]
    if live and minutes and (wanted is None or wanted):
        sources = (
            [lambda *parts: org_key(org.pk, *parts)]
            if wanted is None
            else [lambda *parts, b=b: bot_key(b, *parts) for b in wanted]
        )
        groups: dict[int, list] = {}
        for minute in minutes:
            hour = datetime.fromtimestamp(minute * 60, tz=UTC).replace(minute=0)
            groups.setdefault(index[hour], []).extend(
                (key("m", minute), key("h", minute) if hists else None) for key in sources
            )
        for idx, (counts, hist) in zip(groups, _live_sums(list(groups.values())), strict=True):
            totals[idx].add(*counts, hist=hist)
    return starts, totals


def response_time_series(
    *,
    org: Organization,
    period: Period | str,
    bots=None,
    now: datetime | None = None,
    live: bool = True,
) -> list[ResponseTimePoint]:
    """Avg, p50, p95 and p99 response time per bucket of the period (org or the given bots);
    `live=False` reads the rolled-up hours only (when Redis is unreachable)."""
    return period_series(org=org, period=period, bots=bots, now=now, live=live)[0]


def message_volume_series(
    *,
    org: Organization,
    period: Period | str,
    bots=None,
    now: datetime | None = None,
    live: bool = True,
) -> list[VolumePoint]:
    """Inbound and outbound messages per bucket of the period (org or the given bots);
    `live=False` reads the rolled-up hours only (when Redis is unreachable)."""
    period = period if isinstance(period, Period) else period_get(period)
    starts, totals = _bucket_totals(
        org=org, period=period, bots=bots, now=now, hists=False, live=live
    )
    return [VolumePoint(s, t.inbound, t.outbound) for s, t in zip(starts, totals, strict=True)]


def period_series(
    *,
    org: Organization,
    period: Period | str,
    bots=None,
    now: datetime | None = None,
    live: bool = True,
) -> tuple[list[ResponseTimePoint], list[VolumePoint]]:
    """response_time_series() and message_volume_series() from one read (the dashboard's pair)."""
    period = period if isinstance(period, Period) else period_get(period)
    starts, totals = _bucket_totals(
        org=org, period=period, bots=bots, now=now, hists=True, live=live
    )
    response, volume = [], []
    for start, t in zip(starts, totals, strict=True):
        p50, p95, p99 = sketch.quantiles(sketch.merge(t.hists or ()), (0.5, 0.95, 0.99))
        avg = t.rt_sum / t.rt_n if t.rt_n else None
        response.append(ResponseTimePoint(start, t.rt_n, avg, p50, p95, p99))
        volume.append(VolumePoint(start, t.inbound, t.outbound))
    return response, volume


# --- period summaries and bucketed series for the bot and campaign pages (issue 6) -------------
#
# Totals over a range read the completed, rolled-up hours (BotHourlyRollup; durations are those
# of the conversations that ended in the range); campaign figures come from the campaign's
# conversations (the range's rows only, through the (organization, campaign, started_at) index).

PERIOD_LENGTHS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}

_SUMMARY_SUMS = (
    "messages_in", "messages_out", "conversations_started", "conversations_ended",
    "duration_sum_seconds", "successes", "failures", "fallbacks", "handoffs", "kb_hits",
    "kb_misses", "tokens", "cost_usd", "response_count", "response_sum_ms", "csat_sum",
    "csat_count", "calls", "bookings", "emails", "tasks", "revenue",
)  # fmt: skip


def _ratio(part, whole, scale: float = 100.0) -> float | None:
    return scale * float(part) / float(whole) if whole else None


@dataclass(frozen=True)
class PeriodSummary:
    """A bot's (or bots') figures over [start, end): counts, rates in percent, percentiles in ms."""

    start: datetime
    end: datetime
    conversations: int  # started in the range
    conversations_ended: int
    messages_in: int
    messages_out: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    success_rate: float | None
    error_rate: float | None
    fallback_rate: float | None
    kb_hit_rate: float | None
    handoff_rate: float | None  # of the conversations that ended
    csat_avg: float | None
    tokens: int
    cost_usd: float
    avg_duration_seconds: float | None
    calls: int
    bookings: int
    emails: int
    tasks: int
    revenue: float

    @property
    def messages(self) -> int:
        return self.messages_in + self.messages_out


def _range_hist(org: Organization, bot_ids: list[int], start: datetime, end: datetime) -> dict:
    """The response-time histogram of the bots over [start, end) (whole hours)."""
    hours = _hours_between(start, end)
    return _rollup_bucket_hists(org, bot_ids, dict.fromkeys(hours, 0), hours).get(0, {})


def bot_period_summary(
    *, org: Organization, bots=None, start: datetime, end: datetime
) -> PeriodSummary:
    """Figures of the org's bots (or the given ones) over the rolled-up hours of [start, end)."""
    return bot_period_summaries(org=org, bots=bots, ranges=[(start, end)])[0]


def bot_period_summaries(
    *, org: Organization, bots=None, ranges: list[tuple[datetime, datetime]]
) -> list[PeriodSummary]:
    """bot_period_summary() of consecutive ranges (e.g. a period and the one before it) in one
    read: an hour on the boundary of two ranges counts in the later one."""
    all_ids, wanted = _scoped_bot_ids(org, bots)
    ids = all_ids if wanted is None else wanted
    firsts = [_floor_hour(start) for start, _end in ranges]
    lasts = [*firsts[1:], ranges[-1][1]]  # each range's hours: firsts[i] <= hour < lasts[i]
    sums = (
        BotHourlyRollup.objects.for_org(org)
        .filter(bot_id__in=ids, hour__gte=firsts[0], hour__lt=lasts[-1])
        .aggregate(**{
            f"{name}__{i}": Sum(name, default=0, filter=Q(hour__gte=first, hour__lt=last))
            for i, (first, last) in enumerate(zip(firsts, lasts, strict=True))
            for name in _SUMMARY_SUMS
        })
    )  # fmt: skip
    index = {}
    for i, (first, last) in enumerate(zip(firsts, lasts, strict=True)):
        index.update(dict.fromkeys(_hours_between(first, last), i))
    hists = _rollup_bucket_hists(org, ids, index, list(index))
    return [
        _summary(start, end, {name: sums[f"{name}__{i}"] for name in _SUMMARY_SUMS},
                 hists.get(i, {}))
        for i, (start, end) in enumerate(ranges)
    ]  # fmt: skip


def _hours_between(first: datetime, last: datetime) -> list[datetime]:
    """Whole UTC hours from `first` (a whole hour) up to, not including, `last`."""
    return [first + i * HOUR for i in range(math.ceil((last - first) / HOUR))]


def _summary(start: datetime, end: datetime, sums: dict, hist: dict) -> PeriodSummary:
    p50, p95, p99 = sketch.quantiles(hist, (0.5, 0.95, 0.99))
    replies = sums["successes"] + sums["failures"] + sums["fallbacks"]
    return PeriodSummary(
        start=start,
        end=end,
        conversations=sums["conversations_started"],
        conversations_ended=sums["conversations_ended"],
        messages_in=sums["messages_in"],
        messages_out=sums["messages_out"],
        avg_ms=_ratio(sums["response_sum_ms"], sums["response_count"], 1.0),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        success_rate=_ratio(sums["successes"], replies),
        error_rate=_ratio(sums["failures"], replies),
        fallback_rate=_ratio(sums["fallbacks"], replies),
        kb_hit_rate=_ratio(sums["kb_hits"], sums["kb_hits"] + sums["kb_misses"]),
        handoff_rate=_ratio(sums["handoffs"], sums["conversations_ended"]),
        csat_avg=_ratio(sums["csat_sum"], sums["csat_count"], 1.0),
        tokens=sums["tokens"],
        cost_usd=float(sums["cost_usd"]),
        avg_duration_seconds=_ratio(sums["duration_sum_seconds"], sums["conversations_ended"], 1.0),
        calls=sums["calls"],
        bookings=sums["bookings"],
        emails=sums["emails"],
        tasks=sums["tasks"],
        revenue=float(sums["revenue"]),
    )


@dataclass(frozen=True)
class Bucket:
    start: datetime  # org time zone
    end: datetime  # the next bucket's start (or now, for the last one)


def period_buckets(
    *, org: Organization, period: Period | str, now: datetime | None = None
) -> tuple[list[Bucket], dict[datetime, int]]:
    """The period's buckets (oldest first) and the bucket index of each UTC hour in them."""
    period = period if isinstance(period, Period) else period_get(period)
    now = now or timezone.now()
    starts, index = _period_buckets(org, period, now)
    ends = [*starts[1:], now]
    return [Bucket(s, e) for s, e in zip(starts, ends, strict=True)], index


@dataclass(frozen=True)
class RollupPoint:
    start: datetime
    end: datetime
    replies: int
    success_rate: float | None
    kb_hit_rate: float | None
    # None where no hour of the bucket is rolled up: a gap on the chart, not a zero.
    tokens: int | None
    cost_usd: float | None
    handoffs: int | None
    conversations_ended: int | None
    avg_duration_seconds: float | None
    calls: int | None
    bookings: int | None
    emails: int | None
    tasks: int | None
    revenue: float | None


def bot_rollup_series(
    *, org: Organization, period: Period | str, bots=None, now: datetime | None = None
) -> list[RollupPoint]:
    """Success and KB-hit rate, tokens, cost, handoffs, durations and AI-employee work per bucket
    of the period, from the rolled-up hours."""
    now = now or timezone.now()
    buckets, index = period_buckets(org=org, period=period, now=now)
    all_ids, wanted = _scoped_bot_ids(org, bots)
    ids = all_ids if wanted is None else wanted
    names = (
        "successes", "failures", "fallbacks", "kb_hits", "kb_misses", "tokens", "cost_usd",
        "handoffs", "conversations_ended", "duration_sum_seconds", "calls", "bookings", "emails",
        "tasks", "revenue",
    )  # fmt: skip
    acc = [dict.fromkeys(names, 0) for _ in buckets]
    seen = [False] * len(buckets)  # buckets with a rolled-up hour
    thresholds = _bucket_firsts(index)
    table = BotHourlyRollup._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(  # summed per bucket in SQL: ~30 rows for 30 days, not 720
            f"""
            SELECT width_bucket(hour, %(thresholds)s::timestamptz[]) - 1,
                {", ".join(f"sum({name})" for name in names)}
            FROM {table}
            WHERE organization_id = %(org)s AND bot_id = ANY(%(bots)s)
              AND hour >= %(first)s AND hour <= %(last)s
            GROUP BY 1
            """,  # noqa: S608 - the table and column names are ours
            {"thresholds": thresholds, "org": org.pk, "bots": ids, "first": thresholds[0],
             "last": max(index)},
        )  # fmt: skip
        for i, *values in cursor.fetchall():
            seen[i] = True
            acc[i] = dict(zip(names, values, strict=True))
    points = []
    for b, a, has_rows in zip(buckets, acc, seen, strict=True):
        replies = a["successes"] + a["failures"] + a["fallbacks"]
        counts = {
            name: a[name] if has_rows else None
            for name in (
                "tokens",
                "handoffs",
                "conversations_ended",
                "calls",
                "bookings",
                "emails",
                "tasks",
            )
        }
        points.append(RollupPoint(
            start=b.start, end=b.end, replies=replies,
            success_rate=_ratio(a["successes"], replies),
            kb_hit_rate=_ratio(a["kb_hits"], a["kb_hits"] + a["kb_misses"]),
            cost_usd=float(a["cost_usd"]) if has_rows else None,
            revenue=float(a["revenue"]) if has_rows else None,
            avg_duration_seconds=_ratio(a["duration_sum_seconds"], a["conversations_ended"], 1.0),
            **counts,
        ))  # fmt: skip
    return points


@dataclass(frozen=True)
class CampaignSummary:
    start: datetime
    end: datetime
    attempts: int  # conversations (calls) started in the range
    outcomes: dict[str, int]  # every CALL_OUTCOME_ORDER key
    handoffs: int
    csat_avg: float | None
    avg_duration_seconds: float | None

    @property
    def completed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def answer_rate(self) -> float | None:
        answered = self.outcomes["answered"] + self.outcomes["converted"]
        return _ratio(answered, self.completed)

    @property
    def conversion_rate(self) -> float | None:
        return _ratio(self.outcomes["converted"], self.completed)


def campaign_period_summary(
    *, org: Organization, campaign: Campaign, start: datetime, end: datetime
) -> CampaignSummary:
    """A campaign's calls over [start, end): attempts, each outcome, handoffs, CSAT, duration."""
    if campaign.organization_id != org.pk:
        raise ValueError("campaign is not in this organization")
    rows = Conversation.objects.for_org(org).filter(
        campaign_id=campaign.pk, started_at__gte=start, started_at__lt=end
    )
    totals = rows.aggregate(
        attempts=Count("id"),
        handoffs=Count("id", filter=Q(handoff=True)),
        csat=Avg("csat"),
        duration=Avg("metrics__duration_seconds"),
        **{o: Count("id", filter=Q(call_outcome=o)) for o in CALL_OUTCOME_ORDER},
    )
    return CampaignSummary(
        start=start,
        end=end,
        attempts=totals["attempts"],
        outcomes={o: totals[o] for o in CALL_OUTCOME_ORDER},
        handoffs=totals["handoffs"],
        csat_avg=totals["csat"],
        avg_duration_seconds=float(totals["duration"]) if totals["duration"] is not None else None,
    )


@dataclass(frozen=True)
class CampaignPoint:
    start: datetime
    end: datetime
    attempts: int
    outcomes: dict[str, int]


def campaign_outcome_series(
    *, org: Organization, campaign: Campaign, period: Period | str, now: datetime | None = None
) -> list[CampaignPoint]:
    """Call attempts and outcomes per bucket of the period."""
    if campaign.organization_id != org.pk:
        raise ValueError("campaign is not in this organization")
    now = now or timezone.now()
    buckets, index = period_buckets(org=org, period=period, now=now)
    attempts = [0] * len(buckets)
    outcomes = [dict.fromkeys(CALL_OUTCOME_ORDER, 0) for _ in buckets]
    hours = sorted(index)
    for hour, outcome, n in (
        Conversation.objects.for_org(org)
        .filter(campaign_id=campaign.pk, started_at__gte=hours[0], started_at__lt=now)
        .annotate(h=TruncHour("started_at", tzinfo=UTC))
        .values_list("h", "call_outcome")
        .annotate(n=Count("id"))
    ):
        i = index.get(hour)
        if i is None:
            continue
        attempts[i] += n
        if outcome in outcomes[i]:
            outcomes[i][outcome] += n
    return [
        CampaignPoint(b.start, b.end, a, o)
        for b, a, o in zip(buckets, attempts, outcomes, strict=True)
    ]
