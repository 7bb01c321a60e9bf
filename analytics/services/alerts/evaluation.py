"""Evaluation every minute: each enabled rule's metric over its window, its level, and the
firing/recovery history.

The live minute counters in Redis serve windows up to 3 hours; longer windows add the hourly
rollups of complete hours to the live minutes of the last two hours. Reads are grouped per scope
(org or bot) so a cycle costs one Redis round trip per org, whatever the number of rules. A level
is entered when the value crosses its threshold and left only once the value is
`hysteresis_percent` back past it; a rule notifies at most once per cooldown (recoveries of a
notified firing always go out).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from django.db import connection, transaction
from django.db.models import Avg, Q, Sum
from django.utils import timezone

from analytics import live_keys as lk
from analytics import sketch
from analytics.live_keys import bot_key, epoch_minute, org_key
from analytics.models import (
    AlertEvent,
    AlertMetric,
    AlertNotification,
    AlertRule,
    BotHourlyRollup,
    Conversation,
    Organization,
)
from analytics.redis import get_redis
from analytics.services.alerts.commands import alert_events_resolve
from analytics.services.alerts.events import alert_changed_on_commit
from analytics.services.alerts.notifications import alert_notifications_create

RANK = {AlertRule.State.OK: 0, AlertRule.State.WARNING: 1, AlertRule.State.CRITICAL: 2}
LIVE_WINDOW_MAX = 180  # minutes read straight from the live counters; longer: rollups + live
COUNTER_METRICS = {
    AlertMetric.P95_RESPONSE,
    AlertMetric.AVG_RESPONSE,
    AlertMetric.ERROR_RATE,
    AlertMetric.FALLBACK_RATE,
    AlertMetric.HANDOFF_RATE,
    AlertMetric.SUCCESS_RATE,
    AlertMetric.VOLUME,
    AlertMetric.CONVERSATIONS,
    AlertMetric.COST_PER_DAY,
    AlertMetric.NO_DATA,
}

# --- reading the metrics -----------------------------------------------------------------------


@dataclass
class ScopeNeeds:
    minutes: int = 0  # live minutes to read
    hists: bool = False
    rollup_minutes: int = 0  # longest window that needs rollups


@dataclass
class ScopeData:
    counters: list[dict] = field(default_factory=list)  # newest minute last
    hists: list[dict] = field(default_factory=list)
    rollup: dict = field(default_factory=dict)  # window minutes -> summed rollup columns


def _scope_of(rule: AlertRule) -> tuple[str, int | None]:
    """("org", None) or ("bot", id): whose counters a rule reads (a campaign reads its bot)."""
    if rule.bot_id:
        return "bot", rule.bot_id
    if rule.campaign_id and rule.campaign and rule.campaign.bot_id:
        return "bot", rule.campaign.bot_id
    return "org", None


def _needs(rule: AlertRule) -> tuple[int, bool, int]:
    if rule.metric == AlertMetric.NO_DATA:
        longest = max(filter(None, (rule.warning_threshold, rule.critical_threshold)), default=1)
        return min(1440, max(rule.window_minutes, math.ceil(longest) + 1)), False, 0
    window = 1440 if rule.metric == AlertMetric.COST_PER_DAY else rule.window_minutes
    hists = rule.metric == AlertMetric.P95_RESPONSE
    if window > LIVE_WINDOW_MAX:
        return 120, hists, window
    return window, hists, 0


def _decode(raw: dict) -> dict:
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


def _read_live(org: Organization, needs: dict, now: datetime) -> dict:
    """One pipeline for every scope of an org: its minute counters (and histograms)."""
    current = epoch_minute(now)
    pipe = get_redis().pipeline(transaction=False)
    plan = []
    for (kind, pk), need in needs.items():
        key = (
            (lambda *p, pk=pk: bot_key(org.pk, pk, *p))
            if kind == "bot"
            else (lambda *p: org_key(org.pk, *p))
        )
        minutes = range(current - need.minutes + 1, current + 1)
        for minute in minutes:
            pipe.hgetall(key("m", minute))
        if need.hists:
            for minute in minutes:
                pipe.hgetall(key("h", minute))
        plan.append(((kind, pk), need.minutes, need.hists))
    replies = pipe.execute()
    data, i = {}, 0
    for scope, n, hists in plan:
        d = ScopeData(counters=[_decode(r) for r in replies[i : i + n]])
        i += n
        if hists:
            d.hists = replies[i : i + n]
            i += n
        data[scope] = d
    return data


_ROLLUP_SUMS = {
    lk.IN: Sum("messages_in"),
    lk.OUT: Sum("messages_out"),
    lk.OK: Sum("successes"),
    lk.FAIL: Sum("failures"),
    lk.FALLBACK: Sum("fallbacks"),
    "cost": Sum("cost_usd"),
    lk.RT_COUNT: Sum("response_count"),
    lk.RT_SUM_MS: Sum("response_sum_ms"),
    lk.STARTED: Sum("conversations_started"),
    lk.ENDED: Sum("conversations_ended"),
    lk.ESCALATED: Sum("handoffs"),
}


def _read_rollups(org: Organization, needs: dict, now: datetime, data: dict) -> None:
    """Sums of the complete hours before the last two (read live) for long windows."""
    live_from = now.replace(second=0, microsecond=0) - timedelta(minutes=120)
    for (kind, pk), need in needs.items():
        if not need.rollup_minutes:
            continue
        qs = BotHourlyRollup.objects.for_org(org).filter(
            hour__gte=now - timedelta(minutes=need.rollup_minutes), hour__lt=live_from
        )
        if kind == "bot":
            qs = qs.filter(bot_id=pk)
        sums = {k: float(v or 0) for k, v in qs.aggregate(**_ROLLUP_SUMS).items()}
        sums[lk.COST_MICRO_USD] = sums.pop("cost") * 1_000_000
        if need.hists:
            sums["hist"] = sketch.merge(qs.values_list("response_hist", flat=True))
        data[(kind, pk)].rollup[need.rollup_minutes] = sums


def _value(rule: AlertRule, d: ScopeData, gauges: dict, csat: dict, now: datetime) -> float | None:
    """The rule's metric over its window, or None when there is nothing to judge."""
    metric = rule.metric
    if metric == AlertMetric.QUEUE_DEPTH:
        if rule.campaign_id:
            g = gauges.get(f"{rule.campaign.slug}:queue_depth")
            return float(g["value"]) if g else None
        values = [g["value"] for k, g in gauges.items() if k.endswith(":queue_depth")]
        return float(sum(values)) if values else None
    if metric == AlertMetric.CSAT:
        return csat.get(rule.pk)
    if metric == AlertMetric.NO_DATA:
        silent = 0
        for counters in reversed(d.counters):
            if counters:
                return float(silent)
            silent += 1
        return float(silent)
    window = 1440 if metric == AlertMetric.COST_PER_DAY else rule.window_minutes
    live_n = min(window, len(d.counters))
    totals: dict[str, float] = defaultdict(float)
    for counters in d.counters[len(d.counters) - live_n :]:
        for k, v in counters.items():
            totals[k] += v
    hists = list(d.hists[len(d.hists) - live_n :]) if d.hists else []
    if window > LIVE_WINDOW_MAX:
        extra = d.rollup.get(window, {})
        for k, v in extra.items():
            if k != "hist":
                totals[k] += v
        if extra.get("hist"):
            hists.append(extra["hist"])
    replies = totals[lk.OK] + totals[lk.FAIL] + totals[lk.FALLBACK]
    if metric == AlertMetric.VOLUME:
        return totals[lk.IN] + totals[lk.OUT]
    if metric == AlertMetric.CONVERSATIONS:
        return totals[lk.STARTED]
    if metric == AlertMetric.COST_PER_DAY:
        return round(totals[lk.COST_MICRO_USD] / 1_000_000, 6)
    if metric == AlertMetric.AVG_RESPONSE:
        return totals[lk.RT_SUM_MS] / totals[lk.RT_COUNT] if totals[lk.RT_COUNT] else None
    if metric == AlertMetric.P95_RESPONSE:
        return sketch.quantiles(sketch.merge(hists), (0.95,))[0] if hists else None
    if metric == AlertMetric.HANDOFF_RATE:
        return 100 * totals[lk.ESCALATED] / totals[lk.ENDED] if totals[lk.ENDED] else None
    if not replies:
        return None
    part = {
        AlertMetric.ERROR_RATE: lk.FAIL,
        AlertMetric.FALLBACK_RATE: lk.FALLBACK,
        AlertMetric.SUCCESS_RATE: lk.OK,
    }[metric]
    return 100 * totals[part] / replies


def _csat_values(org: Organization, rules: list[AlertRule], now: datetime) -> dict[int, float]:
    out = {}
    for rule in rules:
        qs = Conversation.objects.for_org(org).filter(
            ended_at__gte=now - timedelta(minutes=rule.window_minutes), csat__isnull=False
        )
        if rule.bot_id:
            qs = qs.filter(bot_id=rule.bot_id)
        elif rule.campaign_id:
            qs = qs.filter(campaign_id=rule.campaign_id)
        value = qs.aggregate(v=Avg("csat"))["v"]
        if value is not None:
            out[rule.pk] = float(value)
    return out


# --- state -------------------------------------------------------------------------------------


def _breaches(rule: AlertRule, value: float, threshold: float | None, staying: bool) -> bool:
    if threshold is None:
        return False
    margin = abs(threshold) * rule.hysteresis_percent / 100 if staying else 0.0
    if rule.comparison == AlertRule.Comparison.ABOVE:
        return value > threshold - margin if staying else value > threshold
    return value < threshold + margin if staying else value < threshold


def alert_level(rule: AlertRule, value: float | None) -> str:
    """The rule's next state for `value` from its current one (None keeps the current state)."""
    if value is None:
        return rule.state
    current = RANK[rule.state]
    if _breaches(rule, value, rule.critical_threshold, staying=current >= 2):
        return AlertRule.State.CRITICAL
    if _breaches(rule, value, rule.warning_threshold, staying=current >= 1):
        return AlertRule.State.WARNING
    return AlertRule.State.OK


def scope_label(rule: AlertRule) -> str:
    if rule.bot_id:
        return f"bot {rule.bot.name}"
    if rule.campaign_id:
        return f"campaign {rule.campaign.name}"
    return "whole organization"


@dataclass
class CycleStats:
    rules: int = 0
    orgs: int = 0
    fired: int = 0
    resolved: int = 0
    notifications: int = 0
    seconds: float = 0.0


def alert_rules_evaluate(*, now: datetime | None = None, org_ids=None) -> CycleStats:
    """One evaluation cycle over every enabled rule (or those of `org_ids`)."""
    started = time.monotonic()
    now = now or timezone.now()
    stats = CycleStats()
    rules = AlertRule.objects.filter(enabled=True).select_related("organization", "bot", "campaign")
    orphans = AlertEvent.objects.filter(
        Q(rule__isnull=True) | Q(rule__enabled=False), status=AlertEvent.Status.FIRING
    )
    if org_ids is not None:
        rules = rules.filter(organization_id__in=org_ids)
        orphans = orphans.filter(organization_id__in=org_ids)
    by_org: dict[int, list[AlertRule]] = defaultdict(list)
    orgs = {}
    for rule in rules:
        by_org[rule.organization_id].append(rule)
        orgs[rule.organization_id] = rule.organization
    for event in orphans.select_related("rule"):
        org = Organization.objects.get(pk=event.organization_id)
        reason = "rule deleted" if event.rule_id is None else "rule disabled"
        with transaction.atomic():
            changed = alert_events_resolve(AlertEvent.objects.filter(pk=event.pk), reason)
        alert_changed_on_commit(org=org, changed=changed)
        stats.resolved += len(changed)
    for org_id, org_rules in by_org.items():
        _evaluate_org(orgs[org_id], org_rules, now, stats)
    stats.rules = sum(len(r) for r in by_org.values())
    stats.orgs = len(by_org)
    stats.seconds = time.monotonic() - started
    return stats


def _evaluate_org(org: Organization, rules: list[AlertRule], now: datetime, stats) -> None:
    needs: dict[tuple[str, int | None], ScopeNeeds] = defaultdict(ScopeNeeds)
    for rule in rules:
        if rule.metric in COUNTER_METRICS:
            need = needs[_scope_of(rule)]
            minutes, hists, rollup = _needs(rule)
            need.minutes = max(need.minutes, minutes)
            need.hists = need.hists or hists
            need.rollup_minutes = max(need.rollup_minutes, rollup)
    data = _read_live(org, needs, now) if needs else {}
    _read_rollups(org, needs, now, data)
    gauges = {}
    if any(r.metric == AlertMetric.QUEUE_DEPTH for r in rules):
        raw = get_redis().hgetall(org_key(org.pk, "gauges"))
        gauges = {k.decode(): orjson.loads(v) for k, v in raw.items()}
    csat = _csat_values(org, [r for r in rules if r.metric == AlertMetric.CSAT], now)
    quiet, changed = [], []
    for rule in rules:
        value = _value(rule, data.get(_scope_of(rule), ScopeData()), gauges, csat, now)
        level = alert_level(rule, value)
        rule.last_value, rule.last_evaluated_at = value, now
        if level == rule.state:
            quiet.append(rule)
            continue
        with transaction.atomic():
            changed += _transition(org, rule, level, value, now, stats)
    _store_values(quiet, now)
    if changed:
        alert_changed_on_commit(org=org, changed=changed)


def _store_values(rules: list[AlertRule], now: datetime) -> None:
    """Last value and evaluation time of unchanged rules, in one statement (bulk_update's CASE
    expressions cost more than the whole evaluation at a thousand rules)."""
    if not rules:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {AlertRule._meta.db_table} AS r SET last_value = v.value, "  # noqa: S608 - ours
            "last_evaluated_at = %s "
            "FROM unnest(%s::bigint[], %s::float8[]) AS v(id, value) WHERE r.id = v.id",
            [now, [r.pk for r in rules], [r.last_value for r in rules]],
        )


def _threshold(rule: AlertRule, level: str) -> float | None:
    return rule.critical_threshold if level == AlertRule.State.CRITICAL else rule.warning_threshold


def _transition(org, rule: AlertRule, level: str, value, now, stats) -> list:
    """Record a change of level; returns [(event, what)] to publish."""
    previous = rule.state
    rule.state = level
    open_event = (
        AlertEvent.objects.for_org(org)
        .filter(rule=rule, status=AlertEvent.Status.FIRING)
        .select_for_update()
        .first()
    )
    cooling = rule.last_notified_at is not None and now - rule.last_notified_at < timedelta(
        minutes=rule.cooldown_minutes
    )
    may_notify = not rule.is_muted(now)
    changed = []
    if level == AlertRule.State.OK:
        if open_event is not None:
            open_event.status, open_event.resolved_at = AlertEvent.Status.RESOLVED, now
            open_event.resolution = "recovered"
            open_event.save(update_fields=["status", "resolved_at", "resolution"])
            if open_event.notified and may_notify:
                stats.notifications += alert_notifications_create(
                    rule=rule, event=open_event, kind=AlertNotification.Kind.RESOLVED
                )
            changed.append((open_event, "resolved"))
            stats.resolved += 1
    elif open_event is None:
        event = AlertEvent.objects.create(
            organization=org,
            rule=rule,
            rule_name=rule.name,
            metric=rule.metric,
            scope_label=scope_label(rule),
            severity=level,
            value=value,
            threshold=_threshold(rule, level),
            started_at=now,
        )
        if may_notify and not cooling:
            event.notified = True
            event.save(update_fields=["notified"])
            stats.notifications += alert_notifications_create(
                rule=rule, event=event, kind=AlertNotification.Kind.FIRING
            )
            rule.last_notified_at = now
        changed.append((event, "firing"))
        stats.fired += 1
    else:
        open_event.severity, open_event.value = level, value
        open_event.threshold = _threshold(rule, level)
        open_event.save(update_fields=["severity", "value", "threshold"])
        escalated = RANK[level] > RANK[previous]
        if escalated and may_notify and not cooling and open_event.acknowledged_at is None:
            open_event.notified = True
            open_event.save(update_fields=["notified"])
            stats.notifications += alert_notifications_create(
                rule=rule, event=open_event, kind=AlertNotification.Kind.ESCALATED
            )
            rule.last_notified_at = now
        changed.append((open_event, "escalated" if escalated else "deescalated"))
    rule.save(update_fields=["state", "last_value", "last_evaluated_at", "last_notified_at"])
    return changed


def firing_alerts(*, org: Organization) -> list[AlertEvent]:
    """Open alerts of an org, critical first, without those of muted rules."""
    now = timezone.now()
    events = (
        AlertEvent.objects.for_org(org)
        .filter(status=AlertEvent.Status.FIRING)
        .exclude(rule__muted_until__gt=now)
        .select_related("rule")
        .order_by("-started_at")[:20]
    )
    return sorted(events, key=lambda e: (RANK[e.severity], e.started_at), reverse=True)
