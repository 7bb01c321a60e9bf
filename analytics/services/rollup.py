"""Rollups: hourly bot and org figures, daily bot metrics and per-conversation metrics.

Each unit (an org-hour, an org-day, a set of conversations) is rebuilt from the raw tables by
set-based SQL in one transaction and upserted on its unique key (INSERT .. ON CONFLICT DO UPDATE),
so running a unit twice, or twice at once, leaves identical rows, and a run killed half-way leaves
the previous rows untouched: nothing partial is ever visible.

Empty periods have no rows. A bot-hour or bot-day row exists only when the bot had a message,
a conversation start or end, or (hourly) an activity in it; an org-hour row only when any of its
bots had one. A missing row for a period that is not marked dirty means "nothing happened": counts
are zero and rates and percentiles are undefined (a gap in a chart, never a zero or an
interpolated value). Periods still marked dirty (RollupDirtyHour) are not rolled up yet; charts
show them as gaps too (`analytics.selectors.rollup_pending_hours`).

Dirty tracking. Ingestion marks the hour of every accepted event (`rollup_mark_hours`, one
INSERT .. ON CONFLICT DO NOTHING of the batch's distinct hours, in the ingest transaction), so
the marks are the work list: the hourly run rebuilds every complete marked hour (late data, a
missed run and a killed worker all leave their mark for the next run) and each rebuilt hour marks
its org-local day(s), whose daily metrics are rebuilt once the day is due at 01:00 org time.

Why a mark cannot be lost: ingestion takes a shared advisory lock on its org while it writes
(held to commit); a build takes the exclusive lock just around deleting the mark, which waits
for every ingest transaction that might have seen the mark already, so all their rows are
committed before the build reads. Ingestion that comes after finds the mark being deleted, waits
for the build to commit and inserts a fresh mark for the next run.

Rates are percentages (0-100), like the live cards; an outbound reply without an outcome counts
as a success, and a conversation that ended escalated counts as a handoff (as in live state).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import redis
from django.db import connection, transaction
from django.utils import timezone

from analytics import sketch
from analytics.live_keys import org_key
from analytics.models import (
    Activity,
    Bot,
    BotDailyMetrics,
    BotHourlyRollup,
    Conversation,
    ConversationMetrics,
    Message,
    Organization,
    OrgHourlyUsage,
    RollupDirtyDay,
    RollupDirtyHour,
)
from analytics.redis import get_redis
from analytics.services.enqueue import CONVERSATION_METRICS_ON_END, task_send
from analytics.timeutil import HOUR, floor_hour, org_day_bounds

log = logging.getLogger(__name__)

# Advisory-lock key space (first int4 of the two-key form) for "ingestion writing into org X".
INGEST_LOCK_SPACE = 0x62665231
DAILY_DUE_TIME = time(1, 0)  # daily bot metrics of a day are built from 01:00 org time next day

_T_ORG = Organization._meta.db_table
_T_MSG = Message._meta.db_table
_T_CONV = Conversation._meta.db_table
_T_ACT = Activity._meta.db_table
_T_BOT = Bot._meta.db_table
_T_HOURLY = BotHourlyRollup._meta.db_table
_T_USAGE = OrgHourlyUsage._meta.db_table
_T_DAILY = BotDailyMetrics._meta.db_table
_T_CM = ConversationMetrics._meta.db_table
_T_DIRTY_HOUR = RollupDirtyHour._meta.db_table
_T_DIRTY_DAY = RollupDirtyDay._meta.db_table


# --- marking (called by ingestion) -------------------------------------------------------------


def rollup_mark_hours(cursor, *, org_id: int, epoch_hours: Iterable[int]) -> None:
    """Mark org-hours (hours since the epoch) dirty; runs on the caller's ingest transaction.

    One statement: the shared advisory lock (so a build deleting a mark waits for this
    transaction) and the insert of the batch's distinct hours, ignoring those already marked.
    """
    hours = sorted(set(epoch_hours))  # one lock order for concurrent batches
    if not hours:
        return
    cursor.execute(
        f"""
        WITH barrier AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(%s, %s))
        INSERT INTO {_T_DIRTY_HOUR} (organization_id, hour, marked_at)
        SELECT %s, to_timestamp(h * 3600), now() FROM unnest(%s::bigint[]) AS h, barrier
        ON CONFLICT (organization_id, hour) DO NOTHING
        """,  # noqa: S608 - table names are ours
        [INGEST_LOCK_SPACE, org_id, org_id, hours],
    )


def rollup_mark_history(*, org_id: int) -> int:
    """Mark every hour that holds an org's messages, conversations or activities (after a bulk
    load that bypassed ingestion, e.g. the demo seeder); returns the number of hours marked."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {_T_DIRTY_HOUR} (organization_id, hour, marked_at)
            SELECT %s, h, now() FROM (
                SELECT date_trunc('hour', created_at) FROM {_T_MSG} WHERE organization_id = %s
                UNION SELECT date_trunc('hour', started_at) FROM {_T_CONV} WHERE organization_id = %s
                UNION SELECT date_trunc('hour', ended_at) FROM {_T_CONV}
                    WHERE organization_id = %s AND ended_at IS NOT NULL
                UNION SELECT date_trunc('hour', created_at) FROM {_T_ACT} WHERE organization_id = %s
            ) AS hours (h)
            ON CONFLICT (organization_id, hour) DO NOTHING
            """,  # noqa: S608
            [org_id] * 5,
        )
        return cursor.rowcount


# --- periods ---------------------------------------------------------------------------------


def org_day_due(org: Organization, day: date) -> datetime:
    """When a day's daily metrics are due: 01:00 org time on the next day."""
    return datetime.combine(day + timedelta(days=1), DAILY_DUE_TIME, tzinfo=org.tz)


def _local_dates(org: Organization, start: datetime, end: datetime) -> list[date]:
    first = start.astimezone(org.tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(org.tz).date()
    return sorted({first, last})


def _check_hour(hour: datetime) -> datetime:
    if hour.tzinfo is None:
        raise ValueError("hour must be timezone-aware")
    hour = hour.astimezone(UTC)
    if hour != floor_hour(hour):
        raise ValueError(f"{hour.isoformat()} is not the start of an hour")
    return hour


def _derived(cursor) -> None:
    """Rollups are derived data: commit without waiting for the WAL flush. A crash can lose only
    the latest builds, together with the deletion of their dirty marks, so they are redone."""
    cursor.execute("SET LOCAL synchronous_commit TO off")


def _bot_ids(cursor, org_id: int) -> list[int]:
    cursor.execute(f"SELECT id FROM {_T_BOT} WHERE organization_id = %s", [org_id])  # noqa: S608
    return [row[0] for row in cursor.fetchall()]


def _claim(cursor, *, org_id: int, table: str, column: str, value) -> None:
    """Delete a dirty mark inside the build transaction, behind the org's ingest barrier.

    The exclusive advisory lock is session-level so it can be released right after the delete
    (ingestion waits microseconds, not for the whole build); the delete runs in a savepoint so
    the unlock always runs on a usable transaction.
    """
    cursor.execute("SELECT pg_advisory_lock(%s, %s)", [INGEST_LOCK_SPACE, org_id])
    try:
        with transaction.atomic():
            # SKIP LOCKED: a concurrent build of the same unit holds the mark; this one still
            # rebuilds from the same committed rows instead of holding the barrier meanwhile.
            cursor.execute(
                f"""DELETE FROM {table} WHERE id IN (
                    SELECT id FROM {table} WHERE organization_id = %s AND {column} = %s
                    FOR UPDATE SKIP LOCKED)""",  # noqa: S608
                [org_id, value],
            )
    finally:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [INGEST_LOCK_SPACE, org_id])


# --- hourly ----------------------------------------------------------------------------------

_HOURLY_COLUMNS = (
    "messages_in", "messages_out", "conversations_started", "conversations_ended",
    "duration_sum_seconds", "successes",
    "failures", "fallbacks", "handoffs", "kb_hits", "kb_misses", "tokens", "cost_usd",
    "response_count", "response_sum_ms", "response_hist", "csat_sum", "csat_count", "calls",
    "bookings", "emails", "tasks", "revenue",
)  # fmt: skip

_HOURLY_SQL = f"""
WITH msg AS (
    SELECT bot_id,
        CASE WHEN response_time_ms IS NULL THEN NULL
             WHEN response_time_ms <= %(min_value)s THEN 0
             ELSE ceil(ln(response_time_ms::float8) / %(log_gamma)s)::int END AS bucket,
        count(*) FILTER (WHERE direction = 'inbound') AS messages_in,
        count(*) FILTER (WHERE direction = 'outbound') AS messages_out,
        count(*) FILTER (WHERE direction = 'outbound' AND outcome NOT IN ('failed', 'fallback'))
            AS successes,
        count(*) FILTER (WHERE direction = 'outbound' AND outcome = 'failed') AS failures,
        count(*) FILTER (WHERE direction = 'outbound' AND outcome = 'fallback') AS fallbacks,
        count(*) FILTER (WHERE kb_hit) AS kb_hits,
        count(*) FILTER (WHERE NOT kb_hit) AS kb_misses,
        sum(tokens) AS tokens,
        sum(cost_usd) AS cost_usd,
        count(response_time_ms) AS response_count,
        sum(response_time_ms) AS response_sum_ms
    FROM {_T_MSG}
    WHERE organization_id = %(org)s AND bot_id = ANY(%(bots)s)
      AND created_at >= %(start)s AND created_at < %(end)s
    GROUP BY 1, 2
), by_bot AS (
    SELECT bot_id, sum(messages_in) AS messages_in, sum(messages_out) AS messages_out,
        sum(successes) AS successes, sum(failures) AS failures, sum(fallbacks) AS fallbacks,
        sum(kb_hits) AS kb_hits, sum(kb_misses) AS kb_misses, sum(tokens) AS tokens,
        sum(cost_usd) AS cost_usd, sum(response_count) AS response_count,
        coalesce(sum(response_sum_ms), 0) AS response_sum_ms,
        coalesce(jsonb_object_agg(bucket::text, response_count) FILTER (WHERE bucket IS NOT NULL),
                 '{{}}'::jsonb) AS response_hist
    FROM msg GROUP BY bot_id
), started AS (
    SELECT bot_id, count(*) AS n FROM {_T_CONV}
    WHERE organization_id = %(org)s AND started_at >= %(start)s AND started_at < %(end)s
    GROUP BY bot_id
), ended AS (
    SELECT bot_id, count(*) AS n, count(*) FILTER (WHERE handoff OR status = 'escalated') AS handoffs,
        coalesce(sum(extract(epoch FROM ended_at - started_at)), 0)::float8 AS duration_sum,
        coalesce(sum(csat), 0) AS csat_sum, count(csat) AS csat_count
    FROM {_T_CONV}
    WHERE organization_id = %(org)s AND ended_at >= %(start)s AND ended_at < %(end)s
    GROUP BY bot_id
), acts AS (
    SELECT bot_id, count(*) FILTER (WHERE kind = 'call') AS calls,
        count(*) FILTER (WHERE kind = 'booking') AS bookings,
        count(*) FILTER (WHERE kind = 'email') AS emails,
        count(*) FILTER (WHERE kind = 'task') AS tasks, coalesce(sum(value), 0) AS revenue
    FROM {_T_ACT}
    WHERE organization_id = %(org)s AND created_at >= %(start)s AND created_at < %(end)s
    GROUP BY bot_id
), bots AS (
    SELECT bot_id FROM by_bot UNION SELECT bot_id FROM started
    UNION SELECT bot_id FROM ended UNION SELECT bot_id FROM acts
), new AS (
    SELECT b.bot_id,
        coalesce(m.messages_in, 0) AS messages_in, coalesce(m.messages_out, 0) AS messages_out,
        coalesce(s.n, 0) AS conversations_started, coalesce(e.n, 0) AS conversations_ended,
        coalesce(e.duration_sum, 0) AS duration_sum_seconds,
        coalesce(m.successes, 0) AS successes, coalesce(m.failures, 0) AS failures,
        coalesce(m.fallbacks, 0) AS fallbacks, coalesce(e.handoffs, 0) AS handoffs,
        coalesce(m.kb_hits, 0) AS kb_hits, coalesce(m.kb_misses, 0) AS kb_misses,
        coalesce(m.tokens, 0) AS tokens, coalesce(m.cost_usd, 0) AS cost_usd,
        coalesce(m.response_count, 0) AS response_count,
        coalesce(m.response_sum_ms, 0) AS response_sum_ms,
        coalesce(m.response_hist, '{{}}'::jsonb) AS response_hist,
        coalesce(e.csat_sum, 0) AS csat_sum, coalesce(e.csat_count, 0) AS csat_count,
        coalesce(a.calls, 0) AS calls, coalesce(a.bookings, 0) AS bookings,
        coalesce(a.emails, 0) AS emails, coalesce(a.tasks, 0) AS tasks,
        coalesce(a.revenue, 0) AS revenue
    FROM bots b
    LEFT JOIN by_bot m USING (bot_id) LEFT JOIN started s USING (bot_id)
    LEFT JOIN ended e USING (bot_id) LEFT JOIN acts a USING (bot_id)
), upsert AS (
    INSERT INTO {_T_HOURLY} AS t (organization_id, bot_id, hour, {", ".join(_HOURLY_COLUMNS)},
        updated_at)
    SELECT %(org)s, bot_id, %(start)s, {", ".join(_HOURLY_COLUMNS)}, now() FROM new
    ORDER BY bot_id
    ON CONFLICT (organization_id, bot_id, hour) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _HOURLY_COLUMNS)}, updated_at = EXCLUDED.updated_at
    WHERE ({", ".join(f"t.{c}" for c in _HOURLY_COLUMNS)})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _HOURLY_COLUMNS)})
    RETURNING 1
), gone AS (
    DELETE FROM {_T_HOURLY}
    WHERE organization_id = %(org)s AND hour = %(start)s
      AND bot_id NOT IN (SELECT bot_id FROM new)
    RETURNING 1
)
SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM upsert), (SELECT count(*) FROM gone)
"""  # noqa: S608 - table and column names are ours

_USAGE_COLUMNS = (
    "messages_sent", "messages_received", "conversations_started", "conversations_ended",
    "active_users", "bots_active", "most_active_bot_id", "api_calls", "ingest_requests", "tokens",
    "cost_usd",
)  # fmt: skip

_USAGE_SQL = f"""
WITH b AS (
    SELECT * FROM {_T_HOURLY} WHERE organization_id = %(org)s AND hour = %(start)s
), conv AS (
    SELECT DISTINCT conversation_id AS id FROM {_T_MSG}
    WHERE organization_id = %(org)s AND bot_id = ANY(%(bots)s)
      AND created_at >= %(start)s AND created_at < %(end)s
    UNION SELECT id FROM {_T_CONV}
    WHERE organization_id = %(org)s AND started_at >= %(start)s AND started_at < %(end)s
    UNION SELECT id FROM {_T_CONV}
    WHERE organization_id = %(org)s AND ended_at >= %(start)s AND ended_at < %(end)s
), users AS (
    -- a conversation without a customer name counts as a customer of its own
    SELECT count(DISTINCT coalesce(nullif(c.customer, ''), 'conversation:' || c.id)) AS n
    FROM {_T_CONV} c JOIN conv USING (id) WHERE c.organization_id = %(org)s
), agg AS (
    SELECT count(*) AS bots_active, sum(messages_out) AS messages_sent,
        sum(messages_in) AS messages_received, sum(conversations_started) AS conversations_started,
        sum(conversations_ended) AS conversations_ended, sum(tokens) AS tokens,
        sum(cost_usd) AS cost_usd,
        (SELECT bot_id FROM b ORDER BY messages_in + messages_out DESC,
            calls + bookings + emails + tasks DESC, bot_id LIMIT 1) AS most_active_bot_id
    FROM b
), upsert AS (
    INSERT INTO {_T_USAGE} AS t (organization_id, hour, {", ".join(_USAGE_COLUMNS)}, updated_at)
    SELECT %(org)s, %(start)s, messages_sent, messages_received, conversations_started,
        conversations_ended, users.n, bots_active, most_active_bot_id, %(api_calls)s,
        %(ingest_requests)s, tokens, cost_usd, now()
    FROM agg, users WHERE agg.bots_active > 0
    ON CONFLICT (organization_id, hour) DO UPDATE SET
        {
    ", ".join(
        f"{c} = EXCLUDED.{c}" for c in _USAGE_COLUMNS if c not in ("api_calls", "ingest_requests")
    )
},
        -- request counts come from Redis (3 days): a rebuild after that keeps the recorded ones
        api_calls = greatest(t.api_calls, EXCLUDED.api_calls),
        ingest_requests = greatest(t.ingest_requests, EXCLUDED.ingest_requests),
        updated_at = EXCLUDED.updated_at
    WHERE ({", ".join(f"t.{c}" for c in _USAGE_COLUMNS)})
        IS DISTINCT FROM ({
    ", ".join(
        f"greatest(t.{c}, EXCLUDED.{c})"
        if c in ("api_calls", "ingest_requests")
        else f"EXCLUDED.{c}"
        for c in _USAGE_COLUMNS
    )
})
    RETURNING 1
)
DELETE FROM {_T_USAGE}
WHERE organization_id = %(org)s AND hour = %(start)s AND NOT EXISTS (SELECT 1 FROM b)
"""  # noqa: S608


@dataclass(frozen=True)
class HourlyResult:
    org_id: int
    hour: datetime
    bots: int  # bot rows the hour has now
    written: int  # bot rows inserted or changed
    removed: int  # bot rows deleted (the bot has no data in the hour any more)


def _request_counts(org_id: int, hour: datetime) -> tuple[int, int]:
    """(API calls, ingest requests) of an org-hour as counted in Redis by the API (0 if gone).

    Only ingestion counts requests so far; `api_calls` adds any other API request counted
    under the same hash's `api_calls` field.
    """
    try:
        counts = get_redis().hgetall(org_key(org_id, "u", hour.strftime("%Y%m%d%H")))
    except redis.RedisError as exc:
        log.warning("request counts of org %s not read (%s); keeping recorded ones", org_id, exc)
        return 0, 0
    ingest = int(counts.get(b"ingest_requests", 0))
    return ingest + int(counts.get(b"api_calls", 0)), ingest


def rollup_build_hourly(*, org_id: int, hour: datetime) -> HourlyResult:
    """Rebuild the BotHourlyRollup rows and the OrgHourlyUsage row of one org-hour (UTC hour)."""
    start = _check_hour(hour)
    end = start + HOUR
    org = Organization.objects.get(pk=org_id)
    api_calls, ingest_requests = _request_counts(org_id, start)
    with transaction.atomic(), connection.cursor() as cursor:
        _derived(cursor)
        _claim(cursor, org_id=org_id, table=_T_DIRTY_HOUR, column="hour", value=start)
        params = {
            "org": org_id,
            "bots": _bot_ids(cursor, org_id),
            "start": start,
            "end": end,
            "min_value": sketch.MIN_VALUE,
            "log_gamma": sketch.LOG_GAMMA,
            "api_calls": api_calls,
            "ingest_requests": ingest_requests,
        }
        cursor.execute(_HOURLY_SQL, params)
        bots, written, removed = cursor.fetchone()
        cursor.execute(_USAGE_SQL, params)
        if bots:
            # the daily metrics of the hour's org-local day(s) are rebuilt once they are due
            cursor.execute(
                f"""
                INSERT INTO {_T_DIRTY_DAY} (organization_id, date, marked_at)
                SELECT %s, d, now() FROM unnest(%s::date[]) AS d
                ON CONFLICT (organization_id, date) DO NOTHING
                """,  # noqa: S608
                [org_id, _local_dates(org, start, end)],
            )
    return HourlyResult(org_id, start, bots, written, removed)


# --- daily -----------------------------------------------------------------------------------

_DAILY_COLUMNS = (
    "total_conversations", "total_messages", "messages_in", "messages_out",
    "avg_response_time_ms", "p50_response_time_ms", "p95_response_time_ms", "p99_response_time_ms",
    "response_hist", "success_rate", "error_rate", "fallback_rate", "handoff_rate", "kb_hit_rate",
    "total_tokens",
    "avg_tokens_per_conversation", "total_cost_usd", "cost_per_conversation_usd",
    "avg_duration_seconds", "avg_messages_per_conversation", "csat_avg", "call_attempts",
    "calls_answered", "calls_busy", "calls_no_answer", "calls_failed", "calls_converted",
    "calls_opt_out",
)  # fmt: skip

_DAILY_SQL = f"""
WITH msg AS (
    SELECT bot_id, count(*) AS total_messages,
        count(*) FILTER (WHERE direction = 'inbound') AS messages_in,
        count(*) FILTER (WHERE direction = 'outbound') AS messages_out,
        avg(response_time_ms)::float8 AS avg_rt,
        percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY response_time_ms) AS pct,
        count(*) FILTER (WHERE direction = 'outbound' AND outcome NOT IN ('failed', 'fallback'))
            AS successes,
        count(*) FILTER (WHERE direction = 'outbound' AND outcome = 'failed') AS failures,
        count(*) FILTER (WHERE direction = 'outbound' AND outcome = 'fallback') AS fallbacks,
        count(kb_hit) AS kb_known, count(*) FILTER (WHERE kb_hit) AS kb_hits,
        sum(tokens) AS tokens, sum(cost_usd) AS cost_usd,
        count(DISTINCT conversation_id) AS conversations_active
    FROM {_T_MSG}
    WHERE organization_id = %(org)s AND bot_id = ANY(%(bots)s)
      AND created_at >= %(start)s AND created_at < %(end)s
    GROUP BY bot_id
), hist AS (
    SELECT bot_id, jsonb_object_agg(bucket::text, n) AS response_hist
    FROM (
        SELECT bot_id,
            CASE WHEN response_time_ms <= %(min_value)s THEN 0
                 ELSE ceil(ln(response_time_ms::float8) / %(log_gamma)s)::int END AS bucket,
            count(*) AS n
        FROM {_T_MSG}
        WHERE organization_id = %(org)s AND bot_id = ANY(%(bots)s)
          AND created_at >= %(start)s AND created_at < %(end)s AND response_time_ms IS NOT NULL
        GROUP BY 1, 2
    ) AS buckets
    GROUP BY bot_id
), started AS (
    SELECT bot_id, count(*) AS n FROM {_T_CONV}
    WHERE organization_id = %(org)s AND started_at >= %(start)s AND started_at < %(end)s
    GROUP BY bot_id
), ended AS (
    SELECT bot_id, count(*) AS n,
        count(*) FILTER (WHERE handoff OR status = 'escalated') AS handoffs,
        avg(extract(epoch FROM ended_at - started_at))::float8 AS avg_duration,
        avg(csat)::float8 AS csat_avg,
        count(*) FILTER (WHERE call_outcome <> '') AS call_attempts,
        count(*) FILTER (WHERE call_outcome = 'answered') AS calls_answered,
        count(*) FILTER (WHERE call_outcome = 'busy') AS calls_busy,
        count(*) FILTER (WHERE call_outcome = 'no_answer') AS calls_no_answer,
        count(*) FILTER (WHERE call_outcome = 'failed') AS calls_failed,
        count(*) FILTER (WHERE call_outcome = 'converted') AS calls_converted,
        count(*) FILTER (WHERE call_outcome = 'opt_out') AS calls_opt_out
    FROM {_T_CONV}
    WHERE organization_id = %(org)s AND ended_at >= %(start)s AND ended_at < %(end)s
    GROUP BY bot_id
), bots AS (
    SELECT bot_id FROM msg UNION SELECT bot_id FROM started UNION SELECT bot_id FROM ended
), new AS (
    SELECT b.bot_id,
        coalesce(s.n, 0) AS total_conversations,
        coalesce(m.total_messages, 0) AS total_messages,
        coalesce(m.messages_in, 0) AS messages_in, coalesce(m.messages_out, 0) AS messages_out,
        m.avg_rt AS avg_response_time_ms, m.pct[1] AS p50_response_time_ms,
        m.pct[2] AS p95_response_time_ms, m.pct[3] AS p99_response_time_ms,
        coalesce(h.response_hist, '{{}}'::jsonb) AS response_hist,
        100.0 * m.successes / nullif(m.messages_out, 0) AS success_rate,
        100.0 * m.failures / nullif(m.messages_out, 0) AS error_rate,
        100.0 * m.fallbacks / nullif(m.messages_out, 0) AS fallback_rate,
        100.0 * e.handoffs / nullif(e.n, 0) AS handoff_rate,
        100.0 * m.kb_hits / nullif(m.kb_known, 0) AS kb_hit_rate,
        coalesce(m.tokens, 0) AS total_tokens,
        m.tokens::float8 / nullif(m.conversations_active, 0) AS avg_tokens_per_conversation,
        coalesce(m.cost_usd, 0) AS total_cost_usd,
        round(m.cost_usd / nullif(m.conversations_active, 0), 6) AS cost_per_conversation_usd,
        e.avg_duration AS avg_duration_seconds,
        m.total_messages::float8 / nullif(m.conversations_active, 0)
            AS avg_messages_per_conversation,
        e.csat_avg AS csat_avg,
        coalesce(e.call_attempts, 0) AS call_attempts,
        coalesce(e.calls_answered, 0) AS calls_answered, coalesce(e.calls_busy, 0) AS calls_busy,
        coalesce(e.calls_no_answer, 0) AS calls_no_answer,
        coalesce(e.calls_failed, 0) AS calls_failed,
        coalesce(e.calls_converted, 0) AS calls_converted,
        coalesce(e.calls_opt_out, 0) AS calls_opt_out
    FROM bots b
    LEFT JOIN msg m USING (bot_id) LEFT JOIN started s USING (bot_id) LEFT JOIN ended e USING (bot_id)
    LEFT JOIN hist h USING (bot_id)
), upsert AS (
    INSERT INTO {_T_DAILY} AS t (organization_id, bot_id, date, {", ".join(_DAILY_COLUMNS)},
        updated_at)
    SELECT %(org)s, bot_id, %(date)s, {", ".join(_DAILY_COLUMNS)}, now() FROM new
    ORDER BY bot_id
    ON CONFLICT (organization_id, bot_id, date) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _DAILY_COLUMNS)}, updated_at = EXCLUDED.updated_at
    WHERE ({", ".join(f"t.{c}" for c in _DAILY_COLUMNS)})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _DAILY_COLUMNS)})
    RETURNING 1
), gone AS (
    DELETE FROM {_T_DAILY}
    WHERE organization_id = %(org)s AND date = %(date)s AND bot_id NOT IN (SELECT bot_id FROM new)
    RETURNING 1
)
SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM upsert), (SELECT count(*) FROM gone)
"""  # noqa: S608


@dataclass(frozen=True)
class DailyResult:
    org_id: int
    date: date
    hours: float  # length of the org-local day (23, 24 or 25)
    bots: int
    written: int
    removed: int


def rollup_build_daily(*, org_id: int, date: date) -> DailyResult:
    """Rebuild the BotDailyMetrics rows of one org-local day, with exact percentiles."""
    org = Organization.objects.get(pk=org_id)
    start, end = org_day_bounds(org, date)
    with transaction.atomic(), connection.cursor() as cursor:
        _derived(cursor)
        # Hour builds insert day marks only after their rows are committed, so no barrier here.
        cursor.execute(
            f"DELETE FROM {_T_DIRTY_DAY} WHERE organization_id = %s AND date = %s",  # noqa: S608
            [org_id, date],
        )
        params = {
            "org": org_id,
            "bots": _bot_ids(cursor, org_id),
            "start": start,
            "end": end,
            "date": date,
            "min_value": sketch.MIN_VALUE,
            "log_gamma": sketch.LOG_GAMMA,
        }
        cursor.execute(_DAILY_SQL, params)
        bots, written, removed = cursor.fetchone()
    return DailyResult(org_id, date, (end - start) / HOUR, bots, written, removed)


# --- conversations ---------------------------------------------------------------------------

_CM_COLUMNS = (
    "bot_id", "started_at", "ended_at", "duration_seconds", "total_messages", "user_messages",
    "bot_messages", "avg_response_time_ms", "p50_response_time_ms", "p95_response_time_ms",
    "p99_response_time_ms", "successful_responses", "failed_responses", "fallback_responses",
    "handoff", "kb_hits", "kb_misses", "tokens", "cost_usd", "resolution_status", "csat",
)  # fmt: skip

_CM_SQL = f"""
WITH c AS (
    SELECT * FROM {_T_CONV} WHERE organization_id = %(org)s AND id = ANY(%(ids)s)
), m AS (
    SELECT conversation_id, count(*) AS total_messages,
        count(*) FILTER (WHERE direction = 'inbound') AS user_messages,
        count(*) FILTER (WHERE direction = 'outbound') AS bot_messages,
        avg(response_time_ms)::float8 AS avg_rt,
        percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY response_time_ms) AS pct,
        count(*) FILTER (WHERE direction = 'outbound' AND outcome NOT IN ('failed', 'fallback'))
            AS successes,
        count(*) FILTER (WHERE direction = 'outbound' AND outcome = 'failed') AS failures,
        count(*) FILTER (WHERE direction = 'outbound' AND outcome = 'fallback') AS fallbacks,
        count(*) FILTER (WHERE kb_hit) AS kb_hits, count(*) FILTER (WHERE NOT kb_hit) AS kb_misses,
        sum(tokens) AS tokens, sum(cost_usd) AS cost_usd
    FROM {_T_MSG}
    WHERE organization_id = %(org)s AND conversation_id = ANY(%(ids)s)
    GROUP BY conversation_id
)
INSERT INTO {_T_CM} AS t (organization_id, conversation_id, {", ".join(_CM_COLUMNS)}, updated_at)
SELECT c.organization_id, c.id, c.bot_id, c.started_at, c.ended_at,
    CASE WHEN c.ended_at IS NOT NULL
        THEN greatest(0, round(extract(epoch FROM c.ended_at - c.started_at)))::int END,
    coalesce(m.total_messages, 0), coalesce(m.user_messages, 0), coalesce(m.bot_messages, 0),
    m.avg_rt, m.pct[1], m.pct[2], m.pct[3],
    coalesce(m.successes, 0), coalesce(m.failures, 0), coalesce(m.fallbacks, 0),
    c.handoff OR c.status = 'escalated', coalesce(m.kb_hits, 0), coalesce(m.kb_misses, 0),
    coalesce(m.tokens, 0), coalesce(m.cost_usd, 0), c.status, c.csat, statement_timestamp()
FROM c LEFT JOIN m ON m.conversation_id = c.id
ORDER BY c.id
ON CONFLICT (conversation_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _CM_COLUMNS)}, updated_at = EXCLUDED.updated_at
"""  # noqa: S608


def conversation_metrics_build_many(*, org_id: int, conversation_ids: Iterable[int]) -> int:
    """Rebuild ConversationMetrics of an org's conversations (set-based); returns rows written."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        _derived(cursor)
        cursor.execute(_CM_SQL, {"org": org_id, "ids": ids})
        return cursor.rowcount


def conversation_metrics_build(*, conversation_id: int) -> None:
    """Rebuild the ConversationMetrics row of one conversation."""
    org_id = Conversation.objects.values_list("organization_id", flat=True).get(pk=conversation_id)
    conversation_metrics_build_many(org_id=org_id, conversation_ids=[conversation_id])


def conversation_metrics_stale(
    *, org_id: int, now: datetime, ended_within: timedelta, active_within: timedelta
) -> list[int]:
    """Conversations whose metrics are missing or older than their last activity: those that
    ended within `ended_within` (a missed end-of-conversation task) and those still active that
    started within `active_within` (long-running ones)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT c.id FROM {_T_CONV} c LEFT JOIN {_T_CM} cm ON cm.conversation_id = c.id
            WHERE c.organization_id = %(org)s
              AND ((c.ended_at >= %(ended_since)s)
                   OR (c.ended_at IS NULL AND c.started_at >= %(active_since)s))
              AND (cm.id IS NULL OR cm.updated_at < c.last_activity_at
                   OR cm.ended_at IS DISTINCT FROM c.ended_at)
            ORDER BY c.id
            """,  # noqa: S608
            {
                "org": org_id,
                "ended_since": now - ended_within,
                "active_since": now - active_within,
            },
        )
        return [row[0] for row in cursor.fetchall()]


SWEEP_ENDED_WITHIN = timedelta(hours=2)
SWEEP_ACTIVE_WITHIN = timedelta(days=7)


def conversation_metrics_sweep(*, now: datetime | None = None) -> int:
    """Rebuild the stale conversation metrics of every org; returns the conversations rebuilt."""
    now = now or timezone.now()
    total = 0
    for org_id in Organization.objects.values_list("pk", flat=True).order_by("pk"):
        ids = conversation_metrics_stale(
            org_id=org_id,
            now=now,
            ended_within=SWEEP_ENDED_WITHIN,
            active_within=SWEEP_ACTIVE_WITHIN,
        )
        for i in range(0, len(ids), 1000):
            total += conversation_metrics_build_many(
                org_id=org_id, conversation_ids=ids[i : i + 1000]
            )
    return total


def conversation_metrics_enqueue(*, org_id: int, conversation_ids: list[int]) -> None:
    """Queue the metrics of conversations a batch ended (or touched after their end), once the
    batch is committed (ingestion commits first: then at once).

    Best effort: a broker that is down must not fail ingestion; the sweep catches up.
    """
    if not conversation_ids:
        return
    args = [org_id, sorted(conversation_ids)]

    def send() -> None:
        try:
            task_send(CONVERSATION_METRICS_ON_END, args=args, retry=False)
        except Exception as exc:  # noqa: BLE001 - any broker failure; the sweep rebuilds them
            log.warning("conversation metrics of org %s not queued (%s)", org_id, exc)

    transaction.on_commit(send)


def conversation_ids_in_range(*, org_id: int, start: datetime, end: datetime) -> list[int]:
    """Conversations of an org started in [start, end)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT id FROM {_T_CONV} WHERE organization_id = %s
                AND started_at >= %s AND started_at < %s ORDER BY id""",  # noqa: S608
            [org_id, start, end],
        )
        return [row[0] for row in cursor.fetchall()]


# --- what is due -----------------------------------------------------------------------------


def rollup_due_hours(*, now: datetime | None = None) -> list[tuple[int, datetime]]:
    """(org id, hour) of every marked hour that is complete, oldest first."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT organization_id, hour FROM {_T_DIRTY_HOUR}
                WHERE hour < %s ORDER BY hour, organization_id""",  # noqa: S608
            [floor_hour(now)],
        )
        return [(org_id, hour.astimezone(UTC)) for org_id, hour in cursor.fetchall()]


def rollup_due_days(*, now: datetime | None = None) -> list[tuple[int, date]]:
    """(org id, date) of every marked day whose 01:00 (org time) of the next day has passed."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT d.organization_id, d.date, o.timezone FROM {_T_DIRTY_DAY} d
                JOIN {_T_ORG} o ON o.id = d.organization_id
                ORDER BY d.date, d.organization_id"""  # noqa: S608
        )
        rows = cursor.fetchall()
    orgs: dict[int, Organization] = {}
    due = []
    for org_id, day, tz in rows:
        org = orgs.setdefault(org_id, Organization(pk=org_id, timezone=tz))
        if org_day_due(org, day) <= now:
            due.append((org_id, day))
    return due
