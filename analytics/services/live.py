"""Live state in Redis: per-minute counters and response-time histograms, active conversations,
capped feeds, gauges, and the set of orgs with new data. Rebuildable from PostgreSQL.

The key layout and field names are in analytics/live_keys.py.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

import orjson
import redis
from django.db import connection
from django.utils import timezone
from redis.cluster import RedisCluster

from analytics import sketch
from analytics.live_keys import (
    ACTIVE_WINDOW,
    COST_MICRO_USD,
    ENDED,
    ESCALATED,
    FEED_LENGTH,
    IN,
    MINUTE_TTL,
    OUT,
    OUTCOME_FIELD,
    RT_COUNT,
    RT_SUM_MS,
    STARTED,
    STREAMED_KEEP,
    TOKENS,
    bot_key,
    dirty_key,
    epoch_minute,
    kept_key,
    org_key,
    stream_digest,
    streamed_key,
    wake_channel,
)
from analytics.models import Activity, Bot, Conversation, Message, Organization
from analytics.redis import REDIS_FAILURES, clustered, get_redis, pipeline_eval
from analytics.selectors.bots import org_bot_ids
from analytics.timeutil import org_day_start

log = logging.getLogger(__name__)

REBUILD_WINDOW = timedelta(hours=2)  # how far back live_rebuild recomputes the live state


class _Accumulator:
    """Folds a batch into per-(bot, minute) increments; keys and JSON are built once at the end."""

    def __init__(self, org: Organization, now: datetime) -> None:
        self.org, self.now = org, now
        self.horizon = epoch_minute(now) - MINUTE_TTL // 60
        self.counts: dict[tuple[int, int], Counter] = defaultdict(
            Counter
        )  # (bot, minute) -> fields
        self.hists: dict[tuple[int, int], Counter] = defaultdict(
            Counter
        )  # (bot, minute) -> buckets
        self.daily: dict[str, Counter] = defaultdict(Counter)
        self.active: dict[int, tuple[int, float, bool]] = {}  # conv id -> (bot id, ts, ended)
        self.feed: list[tuple[float, Callable[[], bytes]]] = []  # JSON built for the newest 50 only
        self.acts: list[tuple[float, dict]] = []
        self.gauges: dict[str, bytes] = {}

    def count(self, bot_id: int, minute: int, fields: dict[str, int]) -> None:
        if minute >= self.horizon:
            self.counts[(bot_id, minute)].update(fields)

    def response_time(self, bot_id: int, minute: int, rt: int) -> None:
        if minute >= self.horizon:
            self.hists[(bot_id, minute)][sketch.bucket_of(rt)] += 1

    def add(self, e, conversation: tuple[int, bool, str] | None) -> None:
        ts = e.at.timestamp()
        minute, d, bot_id = int(ts) // 60, e.data, e.bot_id
        if e.type == "message":
            counts = self.counts[(bot_id, minute)] if minute >= self.horizon else Counter()
            if d["direction"] == "inbound":
                counts[IN] += 1
            else:
                counts[OUT] += 1
                counts[OUTCOME_FIELD[d["outcome"]]] += 1
                rt = d["response_time_ms"]
                if rt is not None:
                    counts[RT_COUNT] += 1
                    counts[RT_SUM_MS] += rt
                    self.response_time(bot_id, minute, rt)
            if d["tokens"]:
                counts[TOKENS] += d["tokens"]
            if d["cost_usd"]:
                counts[COST_MICRO_USD] += int(d["cost_usd"] * 1_000_000)
        elif e.type == "conversation.started":
            self.count(bot_id, minute, {STARTED: 1})
        elif e.type == "conversation.ended":
            escalated = d["status"] == "escalated" or d["handoff"]
            self.count(bot_id, minute, {ENDED: 1, ESCALATED: 1} if escalated else {ENDED: 1})
        elif e.type == "activity":
            self.activity(e.bot, d["kind"], d["description"], d["customer"], d["value"], e.at)
        elif e.type == "gauge":
            campaign = d["campaign"].slug if d["campaign"] else ""
            self.gauges[f"{campaign}:{d['name']}"] = orjson.dumps(
                {"value": d["value"], "at": e.at.isoformat(), "bot": e.bot.slug}
            )
        if conversation is not None:
            conv_id, ended = conversation[0], conversation[1]
            previous = self.active.get(conv_id)
            if previous is None or previous[1] <= ts:
                self.active[conv_id] = (bot_id, ts, ended)
            self.feed.append((ts, lambda: self._feed_item(e, conversation)))

    def activity(
        self, bot, kind: str, description: str, customer: str, value, at: datetime
    ) -> None:
        """Count an AI-employee activity for the bot's day (org time zone) and keep it for the feed."""
        day = at.astimezone(self.org.tz).strftime("%Y%m%d")
        counts = self.daily[bot_key(self.org.pk, bot.id, "d", day)]
        counts[kind] += 1
        if value:
            counts["revenue_c"] += int(value * 100)
        counts["last_ts"] = max(counts["last_ts"], int(at.timestamp()))
        self.acts.append(
            (
                at.timestamp(),
                {
                    "kind": kind,
                    "bot": bot.slug,
                    "bot_name": bot.name,
                    "description": description,
                    "customer": customer,
                    "value": float(value) if value is not None else None,
                    "at": at.isoformat(),
                },
            )
        )

    @staticmethod
    def _feed_item(e, conversation: tuple[int, bool, str, str, str]) -> bytes:
        d = e.data
        return orjson.dumps(
            {
                "kind": e.type,
                "conversation": conversation[0],
                "bot": e.bot.slug,
                "bot_name": e.bot.name,
                "customer": conversation[2],
                "channel": conversation[3],
                "campaign": conversation[4],
                "call_outcome": d.get("call_outcome") or "",
                "direction": d.get("direction", ""),
                "text": d.get("text", "")[:280],
                "status": d.get("status", ""),
                "outcome": d.get("outcome", ""),
                "response_time_ms": d.get("response_time_ms"),
                "at": e.at.isoformat(),
            }
        )

    def write(self, pipe, *, streamed: bool = False) -> None:
        """Queue the batch's writes on `pipe`; with `streamed`, its feed and activity entries
        count as already sent on the API stream (a rebuild of what was there)."""
        org_id = self.org.pk
        org_counts: dict[int, Counter] = defaultdict(Counter)
        org_hists: dict[int, Counter] = defaultdict(Counter)
        for (bot_id, minute), fields in self.counts.items():
            org_counts[minute].update(fields)
            _hincr(pipe, bot_key(org_id, bot_id, "m", minute), fields)
        for (bot_id, minute), buckets in self.hists.items():
            org_hists[minute].update(buckets)
            _hincr(pipe, bot_key(org_id, bot_id, "h", minute), buckets)
        for minute, fields in org_counts.items():
            _hincr(pipe, org_key(org_id, "m", minute), fields)
        for minute, buckets in org_hists.items():
            _hincr(pipe, org_key(org_id, "h", minute), buckets)
        for key, fields in self.daily.items():
            last = fields.pop("last_ts", 0)
            _hincr(pipe, key, fields)
            if last:
                pipe.hset(key, "last_ts", last)
        adds: dict[str, dict[int, float]] = defaultdict(dict)
        removes: dict[str, list[int]] = defaultdict(list)
        for conv_id, (bot_id, ts, ended) in self.active.items():
            for key in (org_key(org_id, "active"), bot_key(org_id, bot_id, "active")):
                if ended:
                    removes[key].append(conv_id)
                else:
                    adds[key][conv_id] = ts
        for key, members in adds.items():
            pipe.zadd(key, members)
        for key, members in removes.items():
            pipe.zrem(key, *members)
        cutoff = (self.now - ACTIVE_WINDOW).timestamp()
        for key in set(adds) | set(removes):
            pipe.zremrangebyscore(key, "-inf", cutoff)
        newest_feed = sorted(self.feed, key=lambda item: item[0])[-FEED_LENGTH:]
        feed = [build() for _, build in newest_feed]
        if feed:
            pipe.lpush(org_key(org_id, "feed"), *feed)
            pipe.ltrim(org_key(org_id, "feed"), 0, FEED_LENGTH - 1)
        newest_acts = sorted(self.acts, key=lambda item: item[0])[-FEED_LENGTH:]
        acts = [orjson.dumps(a) for _, a in newest_acts]
        if acts:
            pipe.lpush(org_key(org_id, "acts"), *acts)
            pipe.ltrim(org_key(org_id, "acts"), 0, FEED_LENGTH - 1)
        if streamed and (feed or acts):
            # A rebuild puts back entries the stream sent before the live state was lost.
            digests = [stream_digest("feed", e) for e in feed]
            digests += [stream_digest("acts", e) for e in acts]
            pipe.zadd(streamed_key(org_id), dict.fromkeys(digests, time.time()))
        if self.gauges:
            pipe.hset(org_key(org_id, "gauges"), mapping=self.gauges)
        if not clustered(pipe):
            pipe.sadd(dirty_key(), org_id)
            pipe.publish(wake_channel(), org_id)
        # On a cluster the dirty set is in another slot than the org's keys (a transaction
        # cannot hold both) and a pipeline cannot PUBLISH: announce() runs after the pipeline.

    def announce(self, pipe) -> None:
        """After `pipe` (written by write()) ran on a cluster: tell pulse the org has news."""
        if clustered(pipe):
            client = get_redis()
            client.sadd(dirty_key(), self.org.pk)
            client.publish(wake_channel(), self.org.pk)


def _message_feed_item(m: Message) -> bytes:
    return orjson.dumps(
        {
            "kind": "message",
            "conversation": m.conversation_id,
            "bot": m.bot.slug,
            "bot_name": m.bot.name,
            "customer": m.conversation.customer,
            "channel": m.conversation.channel,
            "campaign": m.conversation.campaign.slug if m.conversation.campaign else "",
            "call_outcome": "",
            "direction": m.direction,
            "text": m.text[:280],
            "status": m.conversation.status,
            "outcome": m.outcome,
            "response_time_ms": m.response_time_ms,
            "at": m.created_at.isoformat(),
        }
    )


# Many HINCRBYs on one hash and its EXPIRE in one command: a batch touches ~10 keys, not ~300.
_HINCR_MANY = """
for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""


@functools.cache
def _hincr_script(client: redis.Redis):
    return client.register_script(_HINCR_MANY)


def _hincr(pipe, key: str, fields: Counter) -> None:
    args = [MINUTE_TTL]
    for name, amount in fields.items():
        if amount:
            args += (name, amount)
    if len(args) > 1:
        pipeline_eval(pipe, _hincr_script(get_redis()), [key], args)


def live_apply(*, org: Organization, events: list, conversation_ids: dict, now: datetime) -> str:
    """Apply accepted events to the live state; "delayed" (and marked stale) if Redis is down."""
    try:
        if org.live_stale_since is not None:
            # Redis missed earlier batches: rebuild the window from PostgreSQL, which already
            # holds this batch too, instead of adding it on top.
            live_rebuild(org=org, now=now)
            return "ok"
        acc = _Accumulator(org, now)
        for e in events:
            key = (e.bot_id, e.data["conversation"]) if "conversation" in e.data else None
            acc.add(e, conversation_ids.get(key) if key else None)
        r = get_redis()
        pipe = r.pipeline(transaction=False)
        pipe.get(org_key(org.pk, "erased"))  # an erasure in the last ERASED_TTL seconds
        acc.write(pipe)
        pipe.hincrby(org_key(org.pk, "u", now.strftime("%Y%m%d%H")), "ingest_requests", 1)
        pipe.hincrby(org_key(org.pk, "u", now.strftime("%Y%m%d%H")), "events", len(events))
        pipe.expire(org_key(org.pk, "u", now.strftime("%Y%m%d%H")), MINUTE_TTL)
        erased = pipe.execute()[0]
        if erased is not None:
            _live_erased_reapply(r, org, erased, now)
        acc.announce(pipe)
        return "ok"
    except REDIS_FAILURES as exc:
        marked = Organization.objects.filter(pk=org.pk, live_stale_since__isnull=True).update(
            live_stale_since=now
        )
        if marked:  # once per outage and org, not once per batch
            log.warning("live state of org %s not updated (%s); it will be rebuilt", org.pk, exc)
        org.live_stale_since = org.live_stale_since or now
        return "delayed"


def live_rebuild(*, org: Organization, now: datetime | None = None) -> None:
    """Recompute the recent live state of an org from PostgreSQL and clear its stale mark."""
    now = now or timezone.now()
    since = now - REBUILD_WINDOW
    first_minute, last_minute = epoch_minute(since), epoch_minute(now)
    bot_ids = list(org_bot_ids(org))
    today = now.astimezone(org.tz).strftime("%Y%m%d")
    counters = [bot_key(org.pk, bot_id, "d", today) for bot_id in bot_ids]
    for minute in range(first_minute, last_minute + 1):
        counters += (org_key(org.pk, "m", minute), org_key(org.pk, "h", minute))
        for bot_id in bot_ids:
            counters += (bot_key(org.pk, bot_id, "m", minute), bot_key(org.pk, bot_id, "h", minute))
    r = get_redis()
    # The counters as they are just before PostgreSQL is read. The rebuild takes away these
    # values rather than deleting the keys, so the increments of batches that land while it
    # reads survive it (deleting lost them: a rebuild during ingestion undercounted for good).
    held = r.pipeline(transaction=True)
    for key in counters:
        held.hgetall(key)
    held = held.execute()
    pipe = r.pipeline(transaction=True)
    for key, fields in zip(counters, held, strict=True):
        _hincr(
            pipe, key, Counter({f.decode(): -int(v) for f, v in fields.items() if f != b"last_ts"})
        )
    pipe.delete(org_key(org.pk, "active"), org_key(org.pk, "feed"), org_key(org.pk, "acts"))
    for bot_id in bot_ids:
        pipe.delete(bot_key(org.pk, bot_id, "active"))

    acc = _Accumulator(org, now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT bot_id, floor(extract(epoch FROM created_at) / 60)::bigint, direction, outcome,
                   response_time_ms, tokens, cost_usd
            FROM {Message._meta.db_table} WHERE organization_id = %s AND created_at >= %s
            """,  # noqa: S608 - table names are ours
            [org.pk, since],
        )
        for bot_id, minute, direction, outcome, rt, tokens, cost in cursor:
            fields = {IN: 1} if direction == "inbound" else {OUT: 1}
            if direction == "outbound":
                fields[OUTCOME_FIELD[outcome]] = 1
                if rt is not None:
                    fields[RT_COUNT], fields[RT_SUM_MS] = 1, rt
                    acc.response_time(bot_id, minute, rt)
            if tokens:
                fields[TOKENS] = tokens
            if cost:
                fields[COST_MICRO_USD] = int(cost * 1_000_000)
            acc.count(bot_id, minute, fields)
    conversations = Conversation.objects.for_org(org)
    for bot_id, started in conversations.filter(started_at__gte=since).values_list(
        "bot_id", "started_at"
    ):
        acc.count(bot_id, epoch_minute(started), {STARTED: 1})
    for bot_id, ended, status, handoff in conversations.filter(ended_at__gte=since).values_list(
        "bot_id", "ended_at", "status", "handoff"
    ):
        fields = {ENDED: 1, **({ESCALATED: 1} if status == "escalated" or handoff else {})}
        acc.count(bot_id, epoch_minute(ended), fields)
    for conv_id, bot_id, last in conversations.filter(
        ended_at__isnull=True, last_activity_at__gte=now - ACTIVE_WINDOW
    ).values_list("id", "bot_id", "last_activity_at"):
        acc.active[conv_id] = (bot_id, last.timestamp(), False)
    recent = (
        Message.objects.for_org(org)
        .filter(created_at__gte=since)
        .select_related("bot", "conversation", "conversation__campaign")
        .order_by("-created_at")[:FEED_LENGTH]
    )
    for m in reversed(recent):
        acc.feed.append((m.created_at.timestamp(), functools.partial(_message_feed_item, m)))
    activities = Activity.objects.for_org(org).filter(created_at__gte=org_day_start(org, now))
    for a in activities.select_related("bot"):
        acc.activity(a.bot, a.kind, a.description, a.customer, a.value, a.created_at)
    acc.write(pipe, streamed=True)
    pipe.execute()
    acc.announce(pipe)
    Organization.objects.filter(pk=org.pk).update(live_stale_since=None)
    org.live_stale_since = None


def live_stream_claim(*, org_id: int, window: list[bytes], now: float | None = None) -> set[bytes]:
    """Of the stream digests of an org's feed and activity entries (`window`: those in the lists
    now), the ones no pulse has sent on the API stream yet, claimed for the caller by the same
    call: each ZADD NX answers 1 to exactly one pulse, so when two pulses render an org during a
    hand-over (one joined, or took over a dead one's orgs) each event still goes out once.

    The window's claims are kept fresh; a claim is dropped STREAMED_KEEP seconds after its entry
    left the lists (it can never be sent again then)."""
    now = time.time() if now is None else now
    key = streamed_key(org_id)
    pipe = get_redis().pipeline(transaction=False)  # one key: one node, commands in order
    for digest in window:
        pipe.zadd(key, {digest: now}, nx=True)
    if window:
        pipe.zadd(key, dict.fromkeys(window, now), xx=True)
    pipe.zremrangebyscore(key, "-inf", now - STREAMED_KEEP)
    added = pipe.execute()[: len(window)]
    return {digest for digest, new in zip(window, added, strict=True) if new}


def _live_state_lost(client) -> bool:
    """Whether Redis may have lost live state since the last look (and say it has not, now).

    One server: the kept marker is gone. A cluster: the marker holds the run ids of its masters,
    and any change (a master failed over to its replica, which may not have received the last
    writes, or restarted empty) counts as a loss: every org is rebuilt, whichever shard it is on.
    """
    if not clustered(client):
        return bool(client.set(kept_key(), "1", nx=True))
    masters = client.info("server", target_nodes=RedisCluster.PRIMARIES)
    signature = ",".join(sorted(info["run_id"] for info in masters.values()))
    return client.set(kept_key(), signature, get=True) != signature.encode()


STALE_CHECK_SECONDS = 2.0
_next_stale_check = 0.0  # monotonic time of this process's next look for stale orgs


def live_recover(*, now: datetime | None = None, limit: int = 20) -> int:
    """Notice a Redis that lost the live state (every org is then marked stale) and rebuild up
    to `limit` stale orgs from PostgreSQL; returns how many were rebuilt. Pulse calls it every
    tick: one Redis round trip, and a look for stale orgs (ingestion marks an org stale when
    Redis refused its batch) at most every STALE_CHECK_SECONDS."""
    global _next_stale_check
    now = now or timezone.now()
    if _live_state_lost(get_redis()):
        marked = Organization.objects.filter(live_stale_since__isnull=True).update(
            live_stale_since=now
        )
        log.warning(
            "Redis holds no live state (restarted empty, or a cluster master changed): rebuilding %s orgs",
            marked,
        )
    elif time.monotonic() < _next_stale_check:
        return 0
    stale = list(Organization.objects.filter(live_stale_since__isnull=False)[:limit])
    for org in stale:
        live_rebuild(org=org, now=now)
    # More than `limit` stale: the next tick takes the next ones.
    _next_stale_check = 0.0 if len(stale) == limit else time.monotonic() + STALE_CHECK_SECONDS
    return len(stale)


ERASED_TTL = 300  # seconds a batch that began before an erasure may still re-add its items


def activity_signature(*, kind: str, bot: str, description: str, customer: str, at) -> str:
    """A hash naming one activity item of the live list (its items carry no row id): the
    tombstone of an erasure holds these, never the customer's identifier."""
    when = at if isinstance(at, datetime) else datetime.fromisoformat(at)
    raw = orjson.dumps([kind, bot, description, customer, when.timestamp()])
    return hashlib.sha256(raw).hexdigest()


def _item_signature(item: dict) -> str:
    return activity_signature(
        kind=item.get("kind", ""),
        bot=item.get("bot", ""),
        description=item.get("description", ""),
        customer=item.get("customer", ""),
        at=item.get("at") or "1970-01-01T00:00:00+00:00",
    )


def _forget_items(r, org_id: int, *, predicates, bot_ids, conversation_ids) -> int:
    """LREM the feed and activity items that `predicates()` (called once the lists are read:
    (feed item -> doomed, activity item -> doomed)) pick, and take the conversations out of the
    active sets; returns the items removed."""
    feed_key, acts_key = org_key(org_id, "feed"), org_key(org_id, "acts")
    pipe = r.pipeline(transaction=False)
    pipe.lrange(feed_key, 0, -1)
    pipe.lrange(acts_key, 0, -1)
    feed, acts = pipe.execute()
    doomed_feed, doomed_act = predicates()
    doomed = [(feed_key, raw) for raw in feed if doomed_feed(orjson.loads(raw))]
    doomed += [(acts_key, raw) for raw in acts if doomed_act(orjson.loads(raw))]
    pipe = r.pipeline(transaction=False)
    # LREM by value: items pushed meanwhile by ingestion stay where they are.
    for key, raw in doomed:
        pipe.lrem(key, 0, raw)
    if conversation_ids:
        for key in (org_key(org_id, "active"), *(bot_key(org_id, b, "active") for b in bot_ids)):
            pipe.zrem(key, *conversation_ids)
    pipe.execute()
    return len(doomed)


def _live_erased_reapply(r, org: Organization, raw: bytes, now: datetime) -> None:
    """A batch that began before an erasure committed may push the erased rows' items after
    the erasure cleaned the feed: take them out again (the tombstone names rows, not people)."""
    tomb = orjson.loads(raw)
    if now.timestamp() >= tomb["until"]:
        return  # this batch began after the erasure: its rows are kept, and so are its items
    conversations, signatures = set(tomb["conversations"]), set(tomb["activities"])
    _forget_items(
        r,
        org.pk,
        predicates=lambda: (
            lambda item: item.get("conversation") in conversations,
            lambda item: _item_signature(item) in signatures,
        ),
        bot_ids=tomb["bots"],
        conversation_ids=sorted(conversations),
    )


def live_customer_forget(
    *,
    org: Organization,
    customers: list[str],
    conversation_ids: list[int],
    bot_ids: list[int],
    activity_signatures: list[str] = (),
    erased_until: datetime | None = None,
) -> int | None:
    """Take an erased customer's items out of the org's live feed and activity list, and their
    conversations out of the active sets, consistently with the erasure's cut-off: an item goes
    when its row was erased (`conversation_ids`, `activity_signatures`) or when it names the
    customer and its row is not one PostgreSQL still holds (kept: arrived after the cut-off).
    Leaves a tombstone for ingestion batches that began before `erased_until` (the erasure's
    commit) and update Redis after this. Returns the items removed, or None when Redis is
    unreachable (the org is then marked stale: its live state is rebuilt from PostgreSQL, which
    holds only what was kept, once Redis answers)."""
    wanted, conversations = set(customers), set(conversation_ids)
    erased_acts = set(activity_signatures)
    try:
        r = get_redis()
        tomb_key = org_key(org.pk, "erased")
        # Merged with the tombstone of an earlier erasure still in force: a batch stalled
        # across both must not bring back the first one's rows either.
        earlier = orjson.loads(r.get(tomb_key) or b"{}")
        tomb = {
            "until": max((erased_until or timezone.now()).timestamp(), earlier.get("until", 0)),
            "conversations": sorted(conversations | set(earlier.get("conversations", ()))),
            "bots": sorted(set(bot_ids) | set(earlier.get("bots", ()))),
            "activities": sorted(erased_acts | set(earlier.get("activities", ()))),
        }
        r.set(tomb_key, orjson.dumps(tomb), ex=ERASED_TTL)

        def predicates():
            # The rows kept, read after the lists were (ingestion pushes items after its
            # commit): every item read has its row in this read, if the row is held.
            held = Conversation.objects.for_org(org).filter(customer__in=customers)
            kept_conversations = set(held.values_list("pk", flat=True))
            slugs = dict(Bot.objects.for_org(org).values_list("pk", "slug"))
            kept_acts = {
                activity_signature(
                    kind=kind, bot=slugs.get(bot_id, ""), description=text, customer=who, at=at
                )
                for kind, bot_id, text, who, at in Activity.objects.for_org(org)
                .filter(customer__in=customers)
                .values_list("kind", "bot_id", "description", "customer", "created_at")
            }

            def doomed_feed(item: dict) -> bool:
                conv = item.get("conversation")
                return conv in conversations or (
                    item.get("customer") in wanted and conv not in kept_conversations
                )

            def doomed_act(item: dict) -> bool:
                signature = _item_signature(item)
                return signature in erased_acts or (
                    item.get("customer") in wanted and signature not in kept_acts
                )

            return doomed_feed, doomed_act

        removed = _forget_items(
            r,
            org.pk,
            predicates=predicates,
            bot_ids=bot_ids,
            conversation_ids=sorted(conversations),
        )
        # After the pipeline, not in it: on a cluster the dirty set is in another slot and a
        # pipeline cannot PUBLISH. The dashboards redraw the feed without them.
        r.sadd(dirty_key(), org.pk)
        r.publish(wake_channel(), org.pk)
        return removed
    except redis.RedisError as exc:
        Organization.objects.filter(pk=org.pk, live_stale_since__isnull=True).update(
            live_stale_since=timezone.now()
        )
        log.warning("live feed of org %s kept an erased customer (%s): rebuilt later", org.pk, exc)
        return None
