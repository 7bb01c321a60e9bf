"""Alert rules: validation, evaluation every minute, firing/recovery history, notifications.

Evaluation reads the live minute counters in Redis (windows up to 3 hours) and, for longer
windows, the hourly rollups for complete hours plus the live minutes of the last two hours. Reads
are grouped per scope (org or bot) so a cycle costs one Redis round trip per org, whatever the
number of rules. A level is entered when the value crosses its threshold and left only once the
value is `hysteresis_percent` back past it; a rule notifies at most once per cooldown (recoveries
of a notified firing always go out). Notifications are rows (AlertNotification) delivered by a
Celery task with retries and backoff, so a failing channel never loses the alert itself.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import logging
import math
import secrets
import socket
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import Avg, Q, Sum
from django.utils import timezone

from analytics import sketch
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
from analytics.services.enqueue import ALERT_NOTIFICATION_DELIVER, task_send
from analytics.services.live import bot_key, epoch_minute, org_key

log = logging.getLogger(__name__)

RANK = {AlertRule.State.OK: 0, AlertRule.State.WARNING: 1, AlertRule.State.CRITICAL: 2}
LIVE_WINDOW_MAX = 180  # minutes read straight from the live counters; longer: rollups + live
COUNTER_METRICS = {
    AlertMetric.P95_RESPONSE, AlertMetric.AVG_RESPONSE, AlertMetric.ERROR_RATE,
    AlertMetric.FALLBACK_RATE, AlertMetric.HANDOFF_RATE, AlertMetric.SUCCESS_RATE,
    AlertMetric.VOLUME, AlertMetric.CONVERSATIONS, AlertMetric.COST_PER_DAY, AlertMetric.NO_DATA,
}  # fmt: skip
MUTE_CHOICES = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "24h": timedelta(hours=24),
                "7d": timedelta(days=7)}  # fmt: skip


# --- validation --------------------------------------------------------------------------------


def webhook_url_check(url: str, *, resolve: bool = True) -> list[str]:
    """Why a webhook URL is refused (empty: accepted): not http(s), credentials in it, or a host
    with any resolved address that is not globally routable (unless the operator allowed it)."""
    try:
        webhook_target(url, resolve=resolve)
    except ValueError as exc:
        return [str(exc)]
    return []


def webhook_target(url: str, *, resolve: bool = True):
    """(url parts, port, the address to connect to) for a webhook URL; ValueError says why not.

    Every address the host resolves to must pass `address_allowed`: one internal answer among
    public ones is refused, since the connection could be steered to it (DNS rebinding)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("Enter a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("The webhook URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValueError("The webhook URL has no host.")
    if parts.username or parts.password:
        raise ValueError("The webhook URL must not contain credentials; use the signing secret.")
    if not resolve:
        return parts, port, None
    try:
        addresses = _resolve(parts.hostname, port)
    except (OSError, UnicodeError, ValueError):
        raise ValueError(f"The host {parts.hostname!r} does not resolve.") from None
    refused = [str(a) for a in addresses if not address_allowed(a)]
    if refused or not addresses:
        raise ValueError(
            f"The webhook URL points to an address that is not public ({', '.join(refused)}); "
            "webhooks reach only globally routable addresses "
            "(an operator may allow a network with ALERT_WEBHOOK_ALLOWED_NETWORKS)."
        )
    return parts, port, addresses[0]


def webhook_url_masked(url: str) -> str:
    """`scheme://host/***`: where a webhook goes, without the path or query that often hold its
    secret (shown in full only to keys with the `alerts` scope and to org admins)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/***"


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


# Not reachable on the public internet, whatever `is_global` of this Python says about them.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
        "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, IPv4-compatible, 6to4, Teredo, NAT64):
    a packet to it may end up at them."""
    found = []
    if address.ipv4_mapped:
        found.append(address.ipv4_mapped)
    if address.sixtofour:
        found.append(address.sixtofour)
    if address.teredo:
        found.extend(address.teredo)  # (server, client)
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
        or address.is_loopback or address.is_link_local or address.is_private
        or any(address in net for net in _NOT_PUBLIC if net.version == address.version)
    )  # fmt: skip


def address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A webhook may reach `address`: an operator-allowed network, or globally routable with
    every IPv4 address it carries globally routable too (an allow-list, not a deny-list)."""
    inner = embedded_ipv4(address) if address.version == 6 else []
    allowed = settings.ALERT_WEBHOOK_ALLOWED_NETWORKS
    if any(a in net for a in (address, *inner) for net in allowed if net.version == a.version):
        return True
    if inner:
        # mapped, IPv4-compatible and NAT64 forms are the IPv4 address itself; 6to4 and Teredo
        # are judged both as IPv6 (a relay prefix) and by what they carry
        if address.ipv4_mapped or address in _IPV4_COMPATIBLE or address in _NAT64:
            return all(_public(a) for a in inner)
        return all(_public(a) for a in inner) and _public(address)
    return _public(address)


def email_recipients(raw: str) -> list[str]:
    return [a.strip() for a in raw.replace("\n", ",").replace(";", ",").split(",") if a.strip()]


def alert_rule_clean(rule: AlertRule) -> None:
    """Cross-field checks of a rule (form, admin and API all come through here)."""
    errors: dict[str, list[str]] = defaultdict(list)
    warning, critical = rule.warning_threshold, rule.critical_threshold
    if warning is None and critical is None:
        errors["critical_threshold"].append("Set a warning or a critical threshold (or both).")
    if warning is not None and critical is not None:
        above = rule.comparison == AlertRule.Comparison.ABOVE
        if (above and warning >= critical) or (not above and warning <= critical):
            side = "below" if above else "above"
            condition = rule.get_comparison_display()
            errors["warning_threshold"].append(
                f"The warning threshold must be {side} the critical one for “{condition}”."
            )
    for name, value in (("warning_threshold", warning), ("critical_threshold", critical)):
        if value is not None and not math.isfinite(value):
            errors[name].append("Enter a finite number.")
    if rule.metric == AlertMetric.NO_DATA:
        if rule.comparison != AlertRule.Comparison.ABOVE:
            errors["comparison"].append(
                "“No data” alerts fire when the silence is above N minutes."
            )
        for name, value in (("warning_threshold", warning), ("critical_threshold", critical)):
            if value is not None and not 1 <= value <= 1440:
                errors[name].append("For “no data”, thresholds are minutes between 1 and 1440.")
    if rule.metric == AlertMetric.QUEUE_DEPTH and rule.bot_id:
        errors["bot"].append("Queue depth is a campaign gauge: choose a campaign or the whole org.")
    if rule.bot_id and rule.campaign_id:
        errors["campaign"].append("Choose a bot or a campaign, not both.")
    if not rule.window_minutes:
        errors["window_minutes"].append("The window must be at least 1 minute.")
    recipients = email_recipients(rule.email_recipients)
    if len(recipients) > settings.ALERT_MAX_RECIPIENTS:
        errors["email_recipients"].append(
            f"At most {settings.ALERT_MAX_RECIPIENTS} email addresses per rule "
            f"({len(recipients)} given); use a mailing list for more."
        )
        recipients = []  # not worth checking one by one
    for address in recipients:
        try:
            validate_email(address)
        except ValidationError:
            errors["email_recipients"].append(f"{address!r} is not an email address.")
    if rule.webhook_url:
        problems = webhook_url_check(rule.webhook_url)
        if problems:
            errors["webhook_url"].extend(problems)
    if errors:
        raise ValidationError(dict(errors))


def alert_rule_prepare(rule: AlertRule) -> AlertRule:
    """Fill what a user may leave out: a signing secret whenever a webhook is set."""
    if rule.webhook_url and not rule.webhook_secret:
        rule.webhook_secret = secrets.token_urlsafe(32)
    return rule


def alert_rule_delete(*, rule: AlertRule, reason: str = "rule deleted") -> None:
    """Delete a rule; a firing alert of it is resolved (kept in the history), not left open."""
    org = rule.organization
    with transaction.atomic():
        changed = _resolve_open(AlertEvent.objects.for_org(org).filter(rule=rule), reason)
        rule.delete()
    if changed:
        _after_commit_publish(org, changed)


def alert_rule_mute(*, rule: AlertRule, duration: timedelta | None) -> AlertRule:
    rule.muted_until = timezone.now() + duration if duration else None
    rule.save(update_fields=["muted_until"])
    _after_commit_publish(rule.organization, [])
    return rule


def alert_event_acknowledge(*, event: AlertEvent, user) -> AlertEvent:
    if event.acknowledged_at is None:
        event.acknowledged_at = timezone.now()
        event.acknowledged_by = user if user and user.is_authenticated else None
        event.save(update_fields=["acknowledged_at", "acknowledged_by"])
        _after_commit_publish(Organization.objects.get(pk=event.organization_id), [])
    return event


def _resolve_open(queryset, reason: str) -> list[tuple[AlertEvent, str]]:
    now = timezone.now()
    changed = []
    for event in queryset.filter(status=AlertEvent.Status.FIRING):
        event.status, event.resolved_at, event.resolution = AlertEvent.Status.RESOLVED, now, reason
        event.save(update_fields=["status", "resolved_at", "resolution"])
        changed.append((event, "resolved"))
    return changed


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
        key = (lambda *p, pk=pk: bot_key(pk, *p)) if kind == "bot" else (
            lambda *p: org_key(org.pk, *p))  # fmt: skip
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
    "in": Sum("messages_in"), "out": Sum("messages_out"), "ok": Sum("successes"),
    "fail": Sum("failures"), "fb": Sum("fallbacks"), "cost": Sum("cost_usd"),
    "rt_n": Sum("response_count"), "rt_sum": Sum("response_sum_ms"),
    "cs": Sum("conversations_started"), "ce": Sum("conversations_ended"), "esc": Sum("handoffs"),
}  # fmt: skip


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
        sums["cost_u"] = sums.pop("cost") * 1_000_000
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
    replies = totals["ok"] + totals["fail"] + totals["fb"]
    if metric == AlertMetric.VOLUME:
        return totals["in"] + totals["out"]
    if metric == AlertMetric.CONVERSATIONS:
        return totals["cs"]
    if metric == AlertMetric.COST_PER_DAY:
        return round(totals["cost_u"] / 1_000_000, 6)
    if metric == AlertMetric.AVG_RESPONSE:
        return totals["rt_sum"] / totals["rt_n"] if totals["rt_n"] else None
    if metric == AlertMetric.P95_RESPONSE:
        return sketch.quantiles(sketch.merge(hists), (0.95,))[0] if hists else None
    if metric == AlertMetric.HANDOFF_RATE:
        return 100 * totals["esc"] / totals["ce"] if totals["ce"] else None
    if not replies:
        return None
    part = {AlertMetric.ERROR_RATE: "fail", AlertMetric.FALLBACK_RATE: "fb",
            AlertMetric.SUCCESS_RATE: "ok"}[metric]  # fmt: skip
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
            changed = _resolve_open(AlertEvent.objects.filter(pk=event.pk), reason)
        _after_commit_publish(org, changed)
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
        _after_commit_publish(org, changed)


def _store_values(rules: list[AlertRule], now: datetime) -> None:
    """Last value and evaluation time of unchanged rules, in one statement (bulk_update's CASE
    expressions cost more than the whole evaluation at a thousand rules)."""
    if not rules:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE analytics_alertrule AS r SET last_value = v.value, last_evaluated_at = %s "
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
                stats.notifications += _notify(rule, open_event, AlertNotification.Kind.RESOLVED)
            changed.append((open_event, "resolved"))
            stats.resolved += 1
    elif open_event is None:
        event = AlertEvent.objects.create(
            organization=org, rule=rule, rule_name=rule.name, metric=rule.metric,
            scope_label=scope_label(rule), severity=level, value=value,
            threshold=_threshold(rule, level), started_at=now,
        )  # fmt: skip
        if may_notify and not cooling:
            event.notified = True
            event.save(update_fields=["notified"])
            stats.notifications += _notify(rule, event, AlertNotification.Kind.FIRING)
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
            stats.notifications += _notify(rule, open_event, AlertNotification.Kind.ESCALATED)
            rule.last_notified_at = now
        changed.append((open_event, "escalated" if escalated else "deescalated"))
    rule.save(update_fields=["state", "last_value", "last_evaluated_at", "last_notified_at"])
    return changed


# --- notifications -----------------------------------------------------------------------------


def _notify(rule: AlertRule, event: AlertEvent, kind: str) -> int:
    """Create one notification per channel and queue their delivery after the commit."""
    rows = [
        AlertNotification(organization_id=rule.organization_id, event=event, channel="email",
                          kind=kind, target=address)
        for address in email_recipients(rule.email_recipients)
    ]  # fmt: skip
    if rule.webhook_url:
        rows.append(AlertNotification(organization_id=rule.organization_id, event=event,
                                      channel="webhook", kind=kind, target=rule.webhook_url))  # fmt: skip
    AlertNotification.objects.bulk_create(rows)
    ids = [n.pk for n in rows]

    def queue():
        for pk in ids:
            try:
                task_send(ALERT_NOTIFICATION_DELIVER, args=[pk])
            except Exception:  # noqa: BLE001 - the broker may be down; the sweep retries
                log.warning("could not queue alert notification %s", pk, exc_info=True)

    transaction.on_commit(queue)
    return len(rows)


def notification_payload(notification: AlertNotification) -> dict:
    event = notification.event
    rule = event.rule
    return {
        "type": f"alert.{notification.kind}",
        "alert": {
            "id": event.pk,
            "rule_id": event.rule_id,
            "rule": event.rule_name,
            "metric": event.metric,
            "scope": event.scope_label,
            "severity": event.severity,
            "status": event.status,
            "value": event.value,
            "threshold": event.threshold,
            "comparison": rule.comparison if rule else None,
            "started_at": event.started_at.isoformat(),
            "resolved_at": event.resolved_at.isoformat() if event.resolved_at else None,
        },
        "organization": notification.organization.slug,
        "sent_at": timezone.now().isoformat(),
    }


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`: receivers recompute and compare."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever DNS answers a moment later."""

    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)
        self._address = address

    def connect(self):
        sock = socket.create_connection((str(self._address), self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def webhook_post(url: str, body: bytes, headers: dict, *, timeout: float) -> int:
    """POST `body` to `url`, checked again now (DNS may have changed since the rule was saved) and
    connected to the very address that was checked; returns the status (redirects not followed:
    a 3xx is an answer like any other)."""
    parts, port, address = webhook_target(url)
    cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    conn = cls(parts.hostname, port, address, timeout=timeout)
    try:
        path = parts.path or "/"
        conn.request("POST", path + (f"?{parts.query}" if parts.query else ""), body=body,
                     headers={**headers, "Content-Length": str(len(body))})  # fmt: skip
        response = conn.getresponse()
        response.read(65536)
        return response.status
    finally:
        conn.close()


def alert_notification_send(*, notification_id: int) -> str:
    """One delivery attempt: "sent", "retry" (try again later) or "failed" (gave up)."""
    n = (
        AlertNotification.objects.select_related("event__rule", "organization")
        .filter(pk=notification_id)
        .first()
    )
    if n is None or n.status != AlertNotification.Status.PENDING:
        return "gone"
    n.attempts += 1
    error = ""
    try:
        payload = notification_payload(n)
        if n.channel == AlertNotification.Channel.EMAIL:
            alert = payload["alert"]
            subject = (f"[BotFlow] {n.kind.upper()}: {alert['rule']} ({alert['severity']})"
                       if n.kind != "resolved" else f"[BotFlow] RESOLVED: {alert['rule']}")  # fmt: skip
            send_mail(subject, _email_text(payload), None, [n.target], fail_silently=False)
        else:
            rule = n.event.rule
            secret = rule.webhook_secret if rule else ""
            body = orjson.dumps(payload)
            stamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "BotFlow-Alerts/1",
                "X-BotFlow-Event": payload["type"],
                "X-BotFlow-Delivery": str(n.pk),
                "X-BotFlow-Signature": webhook_signature(secret, stamp, body),
            }
            status = webhook_post(n.target, body, headers,
                                  timeout=settings.ALERT_WEBHOOK_TIMEOUT)  # fmt: skip
            if not 200 <= status < 300:
                error = f"HTTP {status}"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        error = f"{exc.__class__.__name__}: {exc}"[:500]
    if not error:
        n.status, n.sent_at, n.last_error = AlertNotification.Status.SENT, timezone.now(), ""
    else:
        n.last_error = error
        if n.attempts >= settings.ALERT_NOTIFY_MAX_ATTEMPTS:
            n.status = AlertNotification.Status.FAILED
    n.save(update_fields=["status", "attempts", "last_error", "sent_at"])
    if n.status == AlertNotification.Status.PENDING:
        return "retry"
    return n.status


def retry_delay(attempts: int) -> int:
    """Seconds before the next try: base, x3, x9, ... (capped at an hour)."""
    return min(3600, settings.ALERT_NOTIFY_BACKOFF * 3 ** max(0, attempts - 1))


def _email_text(payload: dict) -> str:
    a = payload["alert"]
    lines = [
        f"Rule: {a['rule']} ({a['scope']})",
        f"Status: {payload['type'].removeprefix('alert.')} — severity {a['severity']}",
        f"Metric: {a['metric']} = {a['value']} (threshold {a['comparison'] or ''} {a['threshold']})",
        f"Started: {a['started_at']}",
    ]
    if a["resolved_at"]:
        lines.append(f"Resolved: {a['resolved_at']}")
    return "\n".join(lines) + "\n"


def alert_notifications_sweep(*, now: datetime | None = None) -> int:
    """Queue pending notifications whose task was lost (broker down at commit, worker killed)."""
    now = now or timezone.now()
    stale = AlertNotification.objects.filter(
        status=AlertNotification.Status.PENDING, created_at__lt=now - timedelta(minutes=10),
        created_at__gte=now - timedelta(days=1),
    ).values_list("pk", flat=True)[:500]  # fmt: skip
    ids = list(stale)
    for pk in ids:
        task_send(ALERT_NOTIFICATION_DELIVER, args=[pk])
    return len(ids)


# --- live banner and stream --------------------------------------------------------------------


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


def _after_commit_publish(org: Organization, changed: list) -> None:
    def publish_now():
        try:
            alerts_publish(org=org, changed=changed)
        except Exception:  # noqa: BLE001 - a live push never fails the evaluation
            log.warning("could not publish alerts of org %s", org.pk, exc_info=True)

    transaction.on_commit(publish_now)


def alerts_publish(*, org: Organization, changed: list) -> None:
    """Push the org's banner to every dashboard and one JSON `alert` event per change."""
    from django.template.loader import render_to_string

    from dashboard.broadcast import org_group, publish, stream_group

    events = firing_alerts(org=org)
    html = render_to_string(
        "dashboard/partials/_alert_banner.html", {"org": org, "alerts": events, "oob": True}
    )
    publish(org_group(org.pk), html)
    stamp = timezone.now().isoformat()
    for event, what in changed:
        frame = {
            "type": "alert",
            "timestamp": stamp,
            "data": {
                "id": event.pk, "change": what, "rule_id": event.rule_id, "rule": event.rule_name,
                "metric": event.metric, "scope": event.scope_label, "severity": event.severity,
                "status": event.status, "value": event.value, "threshold": event.threshold,
                "started_at": event.started_at.isoformat(),
                "resolved_at": event.resolved_at.isoformat() if event.resolved_at else None,
            },
        }  # fmt: skip
        publish(stream_group(org.pk), orjson.dumps(frame).decode())
