"""Per-conversation metrics: build, queue after ingestion, and the sweep that catches up."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from analytics.models import Conversation, Organization
from analytics.services.enqueue import CONVERSATION_METRICS_ON_END, task_send
from analytics.services.rollup.common import _T_CM, _T_CONV, _T_MSG, _derived

log = logging.getLogger(__name__)

_CM_COLUMNS = (
    "bot_id",
    "started_at",
    "ended_at",
    "duration_seconds",
    "total_messages",
    "user_messages",
    "bot_messages",
    "avg_response_time_ms",
    "p50_response_time_ms",
    "p95_response_time_ms",
    "p99_response_time_ms",
    "successful_responses",
    "failed_responses",
    "fallback_responses",
    "handoff",
    "kb_hits",
    "kb_misses",
    "tokens",
    "cost_usd",
    "resolution_status",
    "csat",
)

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
