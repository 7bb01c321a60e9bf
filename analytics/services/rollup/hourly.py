"""Hourly rollups: the BotHourlyRollup rows and the OrgHourlyUsage row of one org-hour."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import redis
from django.db import connection, transaction

from analytics import sketch
from analytics.live_keys import org_key
from analytics.models import HOURLY_MEASURES, Organization
from analytics.redis import get_redis
from analytics.services.rollup.common import (
    _T_ACT,
    _T_CONV,
    _T_DIRTY_DAY,
    _T_DIRTY_HOUR,
    _T_HOURLY,
    _T_MSG,
    _T_USAGE,
    _bot_ids,
    _derived,
)
from analytics.services.rollup.dirty import _claim
from analytics.timeutil import HOUR, floor_hour

log = logging.getLogger(__name__)


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
    INSERT INTO {_T_HOURLY} AS t (organization_id, bot_id, hour, {", ".join(HOURLY_MEASURES)},
        updated_at)
    SELECT %(org)s, bot_id, %(start)s, {", ".join(HOURLY_MEASURES)}, now() FROM new
    ORDER BY bot_id
    ON CONFLICT (organization_id, bot_id, hour) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in HOURLY_MEASURES)}, updated_at = EXCLUDED.updated_at
    WHERE ({", ".join(f"t.{c}" for c in HOURLY_MEASURES)})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in HOURLY_MEASURES)})
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
    "messages_sent",
    "messages_received",
    "conversations_started",
    "conversations_ended",
    "active_users",
    "bots_active",
    "most_active_bot_id",
    "api_calls",
    "ingest_requests",
    "tokens",
    "cost_usd",
)

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
