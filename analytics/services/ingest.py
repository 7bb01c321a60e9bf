"""Event ingestion: validate each event, dedupe by event id, bulk-write, then update live state.

The hot path costs microseconds per event: hand-written validation (no per-event serializer),
one INSERT .. ON CONFLICT for the idempotency receipts (keyed by event id and the event's month),
one upsert for the conversations the batch touches, COPY for messages, activities and gauges,
and one Redis pipeline after commit.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics import partitioning
from analytics.bulk import ACTIVITY_COLUMNS, GAUGE_COLUMNS, MESSAGE_COLUMNS, copy_rows
from analytics.models import (
    Activity,
    Bot,
    CallOutcome,
    Campaign,
    Channel,
    Conversation,
    Direction,
    EventReceipt,
    Gauge,
    Message,
    Organization,
    Outcome,
)
from analytics.services.live import live_apply
from analytics.services.rollup import conversation_metrics_enqueue, rollup_mark_hours

EVENT_TYPES = ("conversation.started", "message", "conversation.ended", "activity", "gauge")
CHANNELS = frozenset(Channel.values)
DIRECTIONS = frozenset(Direction.values)
OUTCOMES = frozenset(Outcome.values)
END_STATUSES = frozenset({"resolved", "unresolved", "escalated"})
CALL_OUTCOMES = frozenset(CallOutcome.values)
ACTIVITY_KINDS = frozenset(Activity.Kind.values)
MAX_TEXT = 10_000
FUTURE_TOLERANCE = timedelta(minutes=5)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class EnvelopeError(Exception):
    """The batch as a whole is unusable: nothing is stored."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(slots=True)
class Event:
    index: int
    id: str  # canonical lower-case UUID text
    type: str
    at: datetime
    bot: Bot
    data: dict[str, Any]
    bot_id: int = 0

    def __post_init__(self) -> None:
        self.bot_id = self.bot.id  # plain attribute: Model.pk is a property, slow on the hot path


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)
    live: str = "ok"  # "ok", or "delayed" when Redis could not be updated

    def as_response(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "live": self.live,
        }


# --- validation ------------------------------------------------------------------------------


def _text(
    data: dict, name: str, errors: dict, *, required=False, max_length=200, default=""
) -> str:
    value = data.get(name)
    if value is None:
        if required:
            errors[name] = "This field is required."
        return default
    if not isinstance(value, str):
        errors[name] = "Must be a string."
        return default
    if "\x00" in value:  # PostgreSQL text cannot hold it (it would fail the whole batch)
        errors[name] = "Must not contain NUL (\\u0000) characters."
        return default
    if required and not value.strip():
        errors[name] = "Must not be blank."
    elif len(value) > max_length:
        errors[name] = f"At most {max_length:,} characters (got {len(value):,})."
    return value


def _choice(data: dict, name: str, choices: frozenset, errors: dict, *, required=False) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            errors[name] = "This field is required."
        return ""
    if not isinstance(value, str) or value not in choices:  # a list or object is no choice
        errors[name] = f"Must be one of: {', '.join(sorted(choices))}."
        return ""
    return value


def _int(data: dict, name: str, errors: dict, *, low: int, high: int, default=None):
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            errors[name] = "Must be an integer."
            return default
    if not low <= value <= high:
        errors[name] = f"Must be between {low:,} and {high:,}."
        return default
    return value


def _number(data: dict, name: str, errors: dict, *, low: float, high: float, default=None):
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        errors[name] = "Must be a number."
        return default
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        errors[name] = "Must be a number."
        return default
    if not number.is_finite() or not low <= number <= high:
        errors[name] = f"Must be between {low:,} and {high:,}."
        return default
    return number


def _bool(data: dict, name: str, errors: dict, *, nullable=False, default=False):
    value = data.get(name, None if nullable else default)
    if value is None and nullable:
        return None
    if not isinstance(value, bool):
        errors[name] = "Must be true or false" + (" or null." if nullable else ".")
        return default
    return value


_BOT_CACHE_SECONDS = 2.0
_bot_cache: dict[int, tuple[float, dict[str, Bot]]] = {}


def _org_bots(org: Organization, *, refresh: bool = False) -> dict[str, Bot]:
    """The org's bots by slug, cached per process for two seconds (one query, not one a batch)."""
    now = time.monotonic()
    cached = _bot_cache.get(org.pk)
    if refresh or cached is None or cached[0] < now:
        cached = (now + _BOT_CACHE_SECONDS, {b.slug: b for b in Bot.objects.for_org(org)})
        _bot_cache[org.pk] = cached
    return cached[1]


class Validator:
    """Validates raw events for one org; bots and campaigns are looked up once per batch."""

    def __init__(self, org: Organization, now: datetime) -> None:
        self.org, self.now = org, now
        self.bots = _org_bots(org)
        self._bots_refreshed = False
        self._campaigns: dict[str, Campaign] | None = None
        self.oldest = now - timedelta(days=org.raw_retention_days)
        self.newest = now + FUTURE_TOLERANCE

    @property
    def campaigns(self) -> dict[str, Campaign]:
        if self._campaigns is None:
            self._campaigns = {c.slug: c for c in Campaign.objects.for_org(self.org)}
        return self._campaigns

    def validate(self, index: int, raw: Any) -> tuple[Event | None, dict[str, str]]:
        if not isinstance(raw, dict):
            return None, {"event": "Must be a JSON object."}
        errors: dict[str, str] = {}
        event_id = raw.get("id")
        parsed_id = None
        if event_id is None:
            errors["id"] = "This field is required (a client-generated UUID)."
        elif isinstance(event_id, str) and _UUID.fullmatch(event_id):
            parsed_id = event_id.lower()
        else:
            errors["id"] = "Must be a UUID (8-4-4-4-12 hexadecimal digits)."
        event_type = raw.get("type")
        if event_type not in EVENT_TYPES:
            errors["type"] = f"Must be one of: {', '.join(EVENT_TYPES)}."
        at = self._timestamp(raw.get("timestamp"), errors)
        bot = None
        slug = raw.get("bot")
        if not isinstance(slug, str) or not slug:
            errors["bot"] = "This field is required (the bot's slug)."
        else:
            bot = self.bots.get(slug)
            if bot is None and not self._bots_refreshed:  # a bot added in the last two seconds
                self.bots, self._bots_refreshed = _org_bots(self.org, refresh=True), True
                bot = self.bots.get(slug)
            if bot is None:
                errors["bot"] = f"No bot with slug {slug!r} in this organization."
        data: dict[str, Any] = {}
        if event_type in EVENT_TYPES:
            getattr(self, "_" + event_type.replace(".", "_"))(raw, data, errors, bot)
        if errors:
            return None, errors
        return Event(index, parsed_id, event_type, at, bot, data), errors

    def _timestamp(self, value: Any, errors: dict) -> datetime:
        if value is None:
            return self.now
        if not isinstance(value, str):
            errors["timestamp"] = "Must be an ISO 8601 string with a UTC offset."
            return self.now
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            errors["timestamp"] = "Must be an ISO 8601 string with a UTC offset."
            return self.now
        if at.tzinfo is None:
            errors["timestamp"] = "Must include a UTC offset (e.g. 2026-11-23T10:00:00Z)."
        elif at > self.newest:
            errors["timestamp"] = "Is more than 5 minutes in the future."
        elif at < self.oldest:
            errors["timestamp"] = (
                f"Is older than the retention of this organization ({self.org.raw_retention_days}"
                " days)."
            )
        return at

    def _campaign(self, raw: dict, data: dict, errors: dict) -> None:
        slug = raw.get("campaign")
        if slug is None or slug == "":
            data["campaign"] = None
        elif not isinstance(slug, str) or slug not in self.campaigns:
            errors["campaign"] = f"No campaign with slug {slug!r} in this organization."
        else:
            data["campaign"] = self.campaigns[slug]

    def _conversation_started(self, raw, data, errors, bot) -> None:
        data["conversation"] = _text(raw, "conversation", errors, required=True)
        data["customer"] = _text(raw, "customer", errors)
        data["channel"] = _choice(raw, "channel", CHANNELS, errors) or (bot.channel if bot else "")
        self._campaign(raw, data, errors)

    def _message(self, raw, data, errors, bot) -> None:
        data["conversation"] = _text(raw, "conversation", errors, required=True)
        data["customer"] = _text(raw, "customer", errors)
        data["direction"] = _choice(raw, "direction", DIRECTIONS, errors, required=True)
        data["text"] = _text(raw, "text", errors, max_length=MAX_TEXT)
        data["response_time_ms"] = _int(raw, "response_time_ms", errors, low=0, high=3_600_000)
        data["outcome"] = _choice(raw, "outcome", OUTCOMES, errors)
        data["tokens"] = _int(raw, "tokens", errors, low=0, high=10_000_000, default=0)
        data["cost_usd"] = _number(raw, "cost_usd", errors, low=0, high=10_000, default=Decimal(0))
        data["kb_hit"] = _bool(raw, "kb_hit", errors, nullable=True)
        if data["direction"] == "inbound" and data["response_time_ms"] is not None:
            errors["response_time_ms"] = "Only outbound messages have a response time."

    def _conversation_ended(self, raw, data, errors, bot) -> None:
        data["conversation"] = _text(raw, "conversation", errors, required=True)
        data["status"] = _choice(raw, "status", END_STATUSES, errors, required=True)
        data["handoff"] = _bool(raw, "handoff", errors)
        data["csat"] = _int(raw, "csat", errors, low=1, high=5)
        data["call_outcome"] = _choice(raw, "call_outcome", CALL_OUTCOMES, errors)

    def _activity(self, raw, data, errors, bot) -> None:
        data["kind"] = _choice(raw, "kind", ACTIVITY_KINDS, errors, required=True)
        data["description"] = _text(raw, "description", errors, max_length=500)
        data["customer"] = _text(raw, "customer", errors)
        data["value"] = _number(raw, "value", errors, low=0, high=1_000_000_000)

    def _gauge(self, raw, data, errors, bot) -> None:
        name = _text(raw, "name", errors, required=True, max_length=64)
        if name and not all(c.isalnum() or c in "_.-" for c in name):
            errors["name"] = "Use letters, digits, '_', '.' or '-' only."
        data["name"] = name
        value = _number(raw, "value", errors, low=-1e12, high=1e12)
        if value is None and "value" not in errors:
            errors["value"] = "This field is required."
        data["value"] = float(value) if value is not None else 0.0
        self._campaign(raw, data, errors)


def envelope_events(body: Any) -> list:
    """The `events` list of a parsed body, or EnvelopeError naming what is wrong."""
    if not isinstance(body, dict):
        raise EnvelopeError('The body must be a JSON object like {"events": [...]}.')
    if "events" not in body:
        raise EnvelopeError('The body has no "events" field.')
    events = body["events"]
    if not isinstance(events, list):
        raise EnvelopeError('"events" must be a list.')
    if len(events) > settings.INGEST_MAX_EVENTS:
        raise EnvelopeError(
            f'"events" has {len(events):,} events; at most {settings.INGEST_MAX_EVENTS:,} per request.'
        )
    return events


# --- writing ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _ConversationDelta:
    bot: Bot
    external_id: str
    started_at: datetime
    last_activity_at: datetime
    customer: str = ""
    channel: str = ""
    campaign_id: int | None = None
    status: str = "active"
    ended_at: datetime | None = None
    handoff: bool = False
    csat: int | None = None
    call_outcome: str = ""


def events_ingest(*, org: Organization, events: list, now: datetime | None = None) -> IngestResult:
    """Validate and store a batch; the bad events are reported, the good ones are kept."""
    now = now or timezone.now()
    result = IngestResult()
    validator = Validator(org, now)
    valid: list[Event] = []
    seen: set[str] = set()
    for index, raw in enumerate(events):
        event, errors = validator.validate(index, raw)
        if event is None:
            raw_id = raw.get("id") if isinstance(raw, dict) else None
            result.rejected.append({"index": index, "id": raw_id, "errors": errors})
        elif event.id in seen:
            result.duplicates += 1
        else:
            seen.add(event.id)
            valid.append(event)
    if not valid:
        return result
    with transaction.atomic():
        accepted, conversation_ids = _store(org, valid, now)
    result.accepted = len(accepted)
    result.duplicates += len(valid) - len(accepted)
    if accepted:
        result.live = live_apply(
            org=org, events=accepted, conversation_ids=conversation_ids, now=now
        )
        ended = [v[0] for v in conversation_ids.values() if v[1]]
        if ended:  # their metrics are rebuilt by a worker (the periodic sweep if this fails)
            conversation_metrics_enqueue(org_id=org.pk, conversation_ids=ended)
    return result


def _store(org: Organization, events: list[Event], now: datetime) -> tuple[list[Event], dict]:
    connection.ensure_connection()
    # A server-side-binding cursor on Django's connection (and so in its transaction): Django's
    # default client-side binding would quote the 500-element arrays into SQL text in Python.
    receipts = EventReceipt._meta.db_table
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        # Receipts are partitioned by their event's month, and the unique key holds it: a retry
        # in the same UTC month (concurrent ones too, and those of an event without a timestamp,
        # which gets "now" each time) conflicts; an id re-sent with a timestamp in another month
        # is a new event. Also looking the ids up in every month cost 2.8x this statement with a
        # year of receipts (bench/receipts.py): PostgreSQL has no index across partitions.
        cursor.execute(
            f"""
            INSERT INTO {receipts} (organization_id, event_id, type, occurred_month, received_at)
            SELECT %s, e.id, e.type, e.month, %s
            FROM unnest(%s::uuid[], %s::text[], %s::date[]) AS e(id, type, month)
            ORDER BY e.id
            ON CONFLICT (organization_id, event_id, occurred_month) DO NOTHING
            RETURNING event_id::text
            """,  # noqa: S608 - table names are ours
            [
                org.pk,
                now,
                [e.id for e in events],
                [e.type for e in events],
                [partitioning.month_start(e.at) for e in events],
            ],
        )
        fresh = {row[0] for row in cursor.fetchall()}
        accepted = [e for e in events if e.id in fresh]
        if accepted:  # the hours these events fall in are (re)rolled up by the next hourly run
            rollup_mark_hours(
                cursor, org_id=org.pk, epoch_hours={int(e.at.timestamp()) // 3600 for e in accepted}
            )
        conversation_ids = _upsert_conversations(cursor, org, accepted)
        _copy_rows(cursor, org, accepted, conversation_ids)
    return accepted, conversation_ids


def _conversation_deltas(events: list[Event]) -> dict[tuple[int, str], _ConversationDelta]:
    deltas: dict[tuple[int, str], _ConversationDelta] = {}
    for e in sorted(
        (e for e in events if e.type in ("conversation.started", "message", "conversation.ended")),
        key=lambda e: e.at,
    ):
        key = (e.bot_id, e.data["conversation"])
        d = deltas.get(key)
        if d is None:
            d = deltas[key] = _ConversationDelta(e.bot, key[1], e.at, e.at, channel=e.bot.channel)
        d.started_at = min(d.started_at, e.at)
        d.last_activity_at = max(d.last_activity_at, e.at)
        if e.data.get("customer"):
            d.customer = e.data["customer"]
        if e.type == "conversation.started":
            d.channel = e.data["channel"]
            if e.data["campaign"] is not None:
                d.campaign_id = e.data["campaign"].pk
        elif e.type == "conversation.ended":
            d.status, d.ended_at = e.data["status"], e.at
            d.handoff = d.handoff or e.data["handoff"]
            d.csat = e.data["csat"] if e.data["csat"] is not None else d.csat
            d.call_outcome = e.data["call_outcome"] or d.call_outcome
    return deltas


def _upsert_conversations(cursor, org: Organization, events: list[Event]) -> dict:
    """Create or update every conversation the batch touches.

    Returns {(bot id, external id): (conversation id, has ended, customer, channel, campaign slug)}.
    """
    deltas = _conversation_deltas(events)
    if not deltas:
        return {}
    rows = [deltas[key] for key in sorted(deltas)]  # one lock order for concurrent batches
    table = Conversation._meta.db_table
    cursor.execute(
        f"""
        INSERT INTO {table} AS c (organization_id, bot_id, external_id, customer, channel,
            campaign_id, status, started_at, last_activity_at, ended_at, handoff, csat, call_outcome)
        SELECT %s, * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::bigint[],
            %s::text[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::boolean[],
            %s::smallint[], %s::text[])
        ON CONFLICT (organization_id, bot_id, external_id) DO UPDATE SET
            started_at = LEAST(c.started_at, EXCLUDED.started_at),
            last_activity_at = GREATEST(c.last_activity_at, EXCLUDED.last_activity_at),
            customer = COALESCE(NULLIF(EXCLUDED.customer, ''), c.customer),
            campaign_id = COALESCE(EXCLUDED.campaign_id, c.campaign_id),
            status = CASE WHEN EXCLUDED.ended_at IS NOT NULL THEN EXCLUDED.status ELSE c.status END,
            ended_at = COALESCE(EXCLUDED.ended_at, c.ended_at),
            handoff = c.handoff OR EXCLUDED.handoff,
            csat = COALESCE(EXCLUDED.csat, c.csat),
            call_outcome = COALESCE(NULLIF(EXCLUDED.call_outcome, ''), c.call_outcome)
        RETURNING id, bot_id, external_id, ended_at IS NOT NULL, customer, channel,
            (SELECT slug FROM {Campaign._meta.db_table} WHERE id = c.campaign_id)
        """,  # noqa: S608 - table names are ours
        [
            org.pk,
            [d.bot.id for d in rows],
            [d.external_id for d in rows],
            [d.customer for d in rows],
            [d.channel for d in rows],
            [d.campaign_id for d in rows],
            [d.status for d in rows],
            [d.started_at for d in rows],
            [d.last_activity_at for d in rows],
            [d.ended_at for d in rows],
            [d.handoff for d in rows],
            [d.csat for d in rows],
            [d.call_outcome for d in rows],
        ],
    )
    return {
        (bot_id, ext): (pk, ended, customer, channel, campaign or "")
        for pk, bot_id, ext, ended, customer, channel, campaign in cursor.fetchall()
    }


def _copy_rows(cursor, org: Organization, events: list[Event], conversation_ids: dict) -> None:
    messages, activities, gauges = [], [], []
    for e in events:
        d = e.data
        if e.type == "message":
            messages.append(
                (
                    org.pk,
                    e.bot_id,
                    conversation_ids[(e.bot_id, d["conversation"])][0],
                    d["direction"],
                    d["text"],
                    e.at,
                    d["response_time_ms"],
                    d["outcome"],
                    d["tokens"],
                    d["cost_usd"],
                    d["kb_hit"],
                )
            )
        elif e.type == "activity":
            activities.append(
                (org.pk, e.bot_id, d["kind"], d["description"], d["customer"], d["value"], e.at)
            )
        elif e.type == "gauge":
            campaign = d["campaign"]
            gauges.append(
                (org.pk, e.bot_id, campaign.pk if campaign else None, d["name"], d["value"], e.at)
            )
    for model, columns, rows in (
        (Message, MESSAGE_COLUMNS, messages),
        (Activity, ACTIVITY_COLUMNS, activities),
        (Gauge, GAUGE_COLUMNS, gauges),
    ):
        if rows:
            copy_rows(cursor, model._meta.db_table, columns, rows)
