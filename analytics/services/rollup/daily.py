"""Daily bot metrics: the BotDailyMetrics rows of one org-local day, with exact percentiles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db import connection, transaction

from analytics import sketch
from analytics.models import DAILY_MEASURES, Organization
from analytics.services.rollup.common import (
    _T_CONV,
    _T_DAILY,
    _T_DIRTY_DAY,
    _T_MSG,
    _bot_ids,
    _derived,
)
from analytics.timeutil import HOUR, org_day_bounds

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
    INSERT INTO {_T_DAILY} AS t (organization_id, bot_id, date, {", ".join(DAILY_MEASURES)},
        updated_at)
    SELECT %(org)s, bot_id, %(date)s, {", ".join(DAILY_MEASURES)}, now() FROM new
    ORDER BY bot_id
    ON CONFLICT (organization_id, bot_id, date) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in DAILY_MEASURES)}, updated_at = EXCLUDED.updated_at
    WHERE ({", ".join(f"t.{c}" for c in DAILY_MEASURES)})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in DAILY_MEASURES)})
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
