"""Insights, computed in the worker and cached in InsightReport rows: 7-day forecasts per org and
bot, seasonality-aware anomalies of the recent hours, and customers at risk.

Everything reads the hourly bot rollups (never raw messages), except customers at risk, which
reads one aggregate over the org's conversations of the last 90 days.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import transaction
from django.db.models import Avg, Count, Max, Q
from django.utils import timezone

from analytics import sketch
from analytics.forecast import MIN_HISTORY_HOURS, forecast_hourly
from analytics.live_keys import org_key
from analytics.models import (
    Bot,
    BotHourlyRollup,
    Conversation,
    InsightReport,
    Organization,
)
from analytics.redis import get_redis
from analytics.services.enqueue import INSIGHTS_REFRESH, task_send
from analytics.timeutil import floor_hour

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=56)
CHART_HISTORY_HOURS = 14 * 24
REPORT_MAX_AGE = timedelta(hours=1)
ANOMALY_MIN_HOURS = 7 * 24
ANOMALY_RECENT_HOURS = 24
ANOMALY_WARNING, ANOMALY_CRITICAL = 4.0, 7.0
RATE_MIN_REPLIES = 20

FORECAST_METRICS = {
    "messages": "Messages",
    "conversations": "Conversations",
    "bookings": "Bookings",
    "revenue": "Revenue (USD)",
}
ANOMALY_METRICS = {
    "volume": ("Message volume", "messages"),
    "p95": ("p95 response time", "ms"),
    "error_rate": ("Error rate", "%"),
    "fallback_rate": ("Fallback rate", "%"),
    "cost": ("Cost", "USD"),
}
RECOMMENDATIONS = {
    ("volume", "high"): "Traffic is well above normal for this hour: check for a campaign, a "
    "retry storm or a bot loop, and make sure capacity keeps up.",
    ("volume", "low"): "Traffic is well below normal for this hour: check the channel integration "
    "and the bot platform's event delivery.",
    ("p95", "high"): "Replies are slower than usual: check the model provider's latency, "
    "knowledge-base lookups and worker capacity.",
    ("error_rate", "high"): "More replies are failing than usual: look at the failed "
    "conversations for a broken integration or a provider outage.",
    ("fallback_rate", "high"): "The bot falls back more than usual: review the unanswered "
    "questions and extend the knowledge base or intents.",
    ("cost", "high"): "Spending is above normal for this hour: look for long conversations, "
    "larger prompts or a loop.",
}


# --- series from the rollups -------------------------------------------------------------------


@dataclass
class HourlySeries:
    """Hourly arrays of one scope, aligned on `start` (UTC) for `len(hours)` hours."""

    start: datetime
    first_data: datetime | None
    values: dict[str, np.ndarray]
    hists: list[dict]

    @property
    def hours(self) -> int:
        return len(next(iter(self.values.values())))

    def history_hours(self) -> int:
        if self.first_data is None:
            return 0
        return self.hours - int((self.first_data - self.start).total_seconds() // 3600)

    def tail(self, name: str) -> np.ndarray:
        """The series from the first hour with data."""
        return self.values[name][self.hours - self.history_hours() :]


_FIELDS = (
    "messages_in",
    "messages_out",
    "conversations_started",
    "bookings",
    "revenue",
    "successes",
    "failures",
    "fallbacks",
    "cost_usd",
    "response_hist",
)


def org_series(
    *, org: Organization, now: datetime | None = None
) -> tuple[HourlySeries, dict[int, HourlySeries]]:
    """Hourly series of the whole org and of each bot, over the lookback, up to the last hour."""
    end = floor_hour(now or timezone.now())
    start = end - LOOKBACK
    n = int(LOOKBACK.total_seconds() // 3600)
    names = (
        "messages",
        "conversations",
        "bookings",
        "revenue",
        "replies",
        "failures",
        "fallbacks",
        "cost",
    )

    def empty() -> HourlySeries:
        return HourlySeries(start, None, {k: np.zeros(n) for k in names}, [{} for _ in range(n)])

    org_s, bots = empty(), defaultdict(empty)
    rows = (
        BotHourlyRollup.objects.for_org(org)
        .filter(hour__gte=start, hour__lt=end)
        .values_list("bot_id", "hour", *_FIELDS)
    )
    for bot_id, hour, m_in, m_out, convs, bookings, revenue, ok, fail, fb, cost, hist in rows:
        i = int((hour - start).total_seconds() // 3600)
        row = {
            "messages": m_in + m_out,
            "conversations": convs,
            "bookings": bookings,
            "revenue": float(revenue),
            "replies": ok + fail + fb,
            "failures": fail,
            "fallbacks": fb,
            "cost": float(cost),
        }
        for series in (org_s, bots[bot_id]):
            for key, value in row.items():
                series.values[key][i] += value
            if hist:
                series.hists[i] = dict(sketch.merge([series.hists[i], hist]))
            if series.first_data is None or hour < series.first_data:
                series.first_data = hour
    return org_s, dict(bots)


# --- forecasts ---------------------------------------------------------------------------------


def _forecasts(series: HourlySeries) -> dict:
    out = {}
    history = series.history_hours()
    for metric in FORECAST_METRICS:
        tail = series.tail(metric)
        chart = series.values[metric][-CHART_HISTORY_HOURS:]
        chart_start = series.start + timedelta(hours=series.hours - len(chart))
        forecast = forecast_hourly(tail, series.start + timedelta(hours=series.hours - len(tail)))
        last_week = float(series.values[metric][-168:].sum())
        out[metric] = {
            "history_start": chart_start.isoformat(),
            "history": [round(float(v), 3) for v in chart],
            "history_hours": history,
            "last_week": round(last_week, 2),
            "forecast": forecast.as_dict() if forecast else None,
        }
    return out


# --- anomalies ---------------------------------------------------------------------------------


def _hourly_metric(series: HourlySeries, metric: str) -> np.ndarray:
    v = series.values
    if metric == "volume":
        return v["messages"].copy()
    if metric == "cost":
        return v["cost"].copy()
    replies = v["replies"]
    enough = replies >= RATE_MIN_REPLIES
    out = np.full(series.hours, np.nan)
    if metric == "error_rate":
        out[enough] = 100 * v["failures"][enough] / replies[enough]
    elif metric == "fallback_rate":
        out[enough] = 100 * v["fallbacks"][enough] / replies[enough]
    elif metric == "p95":
        for i, hist in enumerate(series.hists):
            if hist and sum(hist.values()) >= RATE_MIN_REPLIES:
                out[i] = sketch.quantiles({int(k): c for k, c in hist.items()}, (0.95,))[0]
    return out


def _floor_scale(metric: str, baseline: float) -> float:
    """The smallest deviation worth a unit of score: noise that is normal for the metric."""
    if metric == "volume":
        return max(1.0, float(np.sqrt(max(baseline, 0.0))))
    if metric in ("error_rate", "fallback_rate"):
        return 1.0
    return max(0.1 * abs(baseline), 1e-6 if metric == "cost" else 5.0)


def _peers(values: np.ndarray, i: int, hour_of_week: np.ndarray) -> np.ndarray:
    """Earlier values of the same seasonal slot: the same hour of the week when two earlier weeks
    exist, else the same hour of the day on the same kind of day (weekday or weekend)."""
    week = values[i - 168 :: -168][:8] if i >= 168 else np.array([])
    week = week[~np.isnan(week)]
    if len(week) >= 2:
        return week
    day = values[i - 24 :: -24][:28]
    kinds = hour_of_week[i - 24 :: -24][:28] // 24 >= 5
    same = day[kinds == (hour_of_week[i] // 24 >= 5)]
    return same[~np.isnan(same)]


def anomalies_detect(
    series: HourlySeries, *, recent_hours: int = ANOMALY_RECENT_HOURS, bot: Bot | None = None
) -> list[dict]:
    """Hours of the recent window whose value is far outside their own daily/weekly pattern.

    Expected value: the median of the same seasonal slot in earlier weeks (or days of the same
    kind); scale: the median absolute deviation of those peers, never below the metric's noise
    floor. Score = |value - expected| / (1.4826 * MAD); >= 4 is a warning, >= 7 critical.
    """
    if series.history_hours() < ANOMALY_MIN_HOURS:
        return []
    hour_of_week = np.array(
        [
            ((series.start + timedelta(hours=i)).weekday() * 24 + (series.start.hour + i) % 24)
            for i in range(series.hours)
        ]
    )
    found = []
    for metric, (label, unit) in ANOMALY_METRICS.items():
        values = _hourly_metric(series, metric)
        first = series.hours - series.history_hours()
        values[:first] = np.nan
        for i in range(series.hours - recent_hours, series.hours):
            value = values[i]
            if np.isnan(value):
                continue
            peers = _peers(values, i, hour_of_week)
            if len(peers) < 2:
                continue
            expected = float(np.median(peers))
            mad = float(np.median(np.abs(peers - expected))) * 1.4826
            scale = max(mad, _floor_scale(metric, expected))
            score = (value - expected) / scale
            direction = "high" if score > 0 else "low"
            if (direction, metric) != ("low", "volume") and direction == "low":
                continue
            if abs(score) < ANOMALY_WARNING:
                continue
            at = series.start + timedelta(hours=i)
            found.append(
                {
                    "metric": metric,
                    "label": label,
                    "unit": unit,
                    "hour": at.isoformat(),
                    "value": round(float(value), 4),
                    "expected": round(expected, 4),
                    "low": round(max(0.0, expected - ANOMALY_WARNING * scale), 4),
                    "high": round(expected + ANOMALY_WARNING * scale, 4),
                    "score": round(float(abs(score)), 1),
                    "severity": "critical" if abs(score) >= ANOMALY_CRITICAL else "warning",
                    "direction": direction,
                    "recommendation": RECOMMENDATIONS[(metric, direction)],
                    "bot_id": bot.pk if bot else None,
                    "bot_slug": bot.slug if bot else "",
                    "bot_name": bot.name if bot else "",
                }
            )
    return found


# --- customers at risk -------------------------------------------------------------------------


def customers_at_risk(
    *, org: Organization, now: datetime | None = None, limit: int = 50
) -> list[dict]:
    """Customers whose contact has dropped or soured against their own last 90 days."""
    now = now or timezone.now()
    recent_from, since = now - timedelta(days=30), now - timedelta(days=90)
    escalated = Q(status=Conversation.Status.ESCALATED) | Q(handoff=True)
    rows = (
        Conversation.objects.for_org(org)
        .filter(started_at__gte=since, started_at__lt=now)
        .exclude(customer="")
        .values("customer")
        .annotate(
            total=Count("id"),
            recent=Count("id", filter=Q(started_at__gte=recent_from)),
            last=Max("started_at"),
            csat_recent=Avg("csat", filter=Q(started_at__gte=recent_from)),
            csat_before=Avg("csat", filter=Q(started_at__lt=recent_from)),
            escalations=Count("id", filter=Q(started_at__gte=recent_from) & escalated),
        )
        .filter(total__gte=3)
    )
    out = []
    for r in rows:
        prior = r["total"] - r["recent"]
        prior_monthly = prior / 2  # days 30-90 ago: two months
        days_since = (now - r["last"]).total_seconds() / 86400
        typical_gap = 90 / r["total"]
        factors, score = [], 0
        if days_since > max(14, 2 * typical_gap):
            factors.append(
                f"no contact for {days_since:.0f} days (usually every {typical_gap:.0f})"
            )
            score += 2
        if prior_monthly >= 2 and r["recent"] < 0.5 * prior_monthly:
            factors.append(
                f"contact dropped to {r['recent']} in 30 days from ~{prior_monthly:.0f} a month"
            )
            score += 2
        csat = r["csat_recent"]
        if csat is not None and (
            csat <= 2.5 or (r["csat_before"] is not None and r["csat_before"] - csat >= 1)
        ):
            factors.append(
                f"low CSAT {csat:.1f}"
                + (f" (was {r['csat_before']:.1f})" if r["csat_before"] is not None else "")
            )
            score += 2 if csat <= 2 else 1
        if r["escalations"] >= 2:
            factors.append(f"{r['escalations']} escalations in 30 days")
            score += 1 if r["escalations"] < 4 else 2
        if not factors:
            continue
        out.append(
            {
                "customer": r["customer"],
                "level": "high" if score >= 3 else "medium" if score >= 2 else "low",
                "score": score,
                "factors": factors,
                "last_contact": r["last"].isoformat(),
                "conversations_30d": r["recent"],
                "conversations_before": prior,
                "csat_recent": round(csat, 2) if csat is not None else None,
            }
        )
    out.sort(key=lambda c: (-c["score"], c["last_contact"]))
    return out[:limit]


# --- the report --------------------------------------------------------------------------------


def insights_refresh(*, org_id: int, now: datetime | None = None) -> int:
    """Recompute every insight of one org and store them (one row per scope); returns rows."""
    started = time.monotonic()
    now = now or timezone.now()
    org = Organization.objects.get(pk=org_id)
    org_s, bot_series = org_series(org=org, now=now)
    bots = {b.pk: b for b in Bot.objects.for_org(org)}
    anomalies = anomalies_detect(org_s)
    reports = {"org": {"forecasts": _forecasts(org_s)}}
    for bot_id, series in bot_series.items():
        bot = bots.get(bot_id)
        if bot is None:
            continue
        anomalies += anomalies_detect(series, bot=bot)
        reports[f"bot:{bot_id}"] = {"forecasts": _forecasts(series)}
    anomalies.sort(key=lambda a: (a["hour"], a["score"]), reverse=True)
    reports["org"].update(
        anomalies=anomalies[:100],
        at_risk=customers_at_risk(org=org, now=now),
        history_hours=org_s.history_hours(),
    )
    seconds = time.monotonic() - started
    with transaction.atomic():
        for scope, payload in reports.items():
            InsightReport.objects.update_or_create(
                organization=org,
                scope=scope,
                defaults={"payload": payload, "computed_at": now, "seconds": seconds},
            )
        InsightReport.objects.for_org(org).exclude(scope__in=list(reports)).delete()
    log.info("insights of org %s: %d scopes in %.1f s", org_id, len(reports), seconds)
    return len(reports)


def insight_report_get(*, org: Organization, scope: str = "org") -> InsightReport | None:
    return InsightReport.objects.for_org(org).filter(scope=scope).first()


def insights_orgs_due(now: datetime | None = None) -> list[int]:
    """Orgs with rollups in the lookback whose report is missing or older than the cache age."""
    now = now or timezone.now()
    active = set(
        BotHourlyRollup.objects.filter(hour__gte=now - LOOKBACK)
        .values_list("organization_id", flat=True)
        .distinct()
    )
    fresh = set(
        InsightReport.objects.filter(
            scope="org", computed_at__gte=now - REPORT_MAX_AGE
        ).values_list("organization_id", flat=True)
    )
    return sorted(active - fresh)


def insights_refresh_queue(*, org: Organization) -> bool:
    """Queue the org's insights once per 10 minutes; False when Redis or the broker is down."""
    try:
        if get_redis().set(org_key(org.pk, "insights-queued"), 1, nx=True, ex=600):
            task_send(INSIGHTS_REFRESH, args=[org.pk])
        return True
    except Exception:  # noqa: BLE001 - the page still renders what it has
        log.warning("could not queue insights of org %s", org.pk, exc_info=True)
        return False


__all__ = ["MIN_HISTORY_HOURS", "insights_refresh", "anomalies_detect", "customers_at_risk"]
