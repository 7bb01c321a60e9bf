"""The only publisher of live frames.

Rendering happens once per org (and subscribed scope) and tick, in `pulse`; a frame is published
once to Redis on `{prefix}:ws:{group}`, where each web process's hub (dashboard.hub) fans it out to
its local sockets.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from analytics.redis import get_redis
from dashboard.hub import channel_prefix


def org_group(org_id: int) -> str:
    return f"org.{org_id}"


def stream_group(org_id: int) -> str:
    return f"stream.org.{org_id}"


def stream_bot_group(bot_id: int) -> str:
    return f"stream.bot.{bot_id}"


def publish(group: str, frame: str) -> int:
    """Publish one rendered frame to every socket of `group` in every web process."""
    return get_redis().publish(channel_prefix() + group, frame)


def pulse_tick() -> int:
    """Render and publish the live fragments of every org with new data; returns how many orgs."""
    from django.template.loader import render_to_string

    from analytics.models import Organization
    from analytics.services.live import dirty_key
    from dashboard.presenters import live_context

    pipe = get_redis().pipeline(transaction=True)
    pipe.smembers(dirty_key())
    pipe.delete(dirty_key())
    members, _ = pipe.execute()
    for org in Organization.objects.filter(pk__in=[int(m) for m in members]):
        context = {**live_context(org), "oob": True}
        frame = _changed_fragments(org.pk, context, render_to_string)
        if frame:
            publish(org_group(org.pk), frame)
        _publish_stream(org, context)
    return len(members)


LIVE_FRAGMENTS = (
    "dashboard/partials/_live_metrics.html",
    "dashboard/partials/_feed_rows.html",
    "dashboard/partials/_employee_cards.html",
    "dashboard/partials/_activity_rows.html",
    "dashboard/partials/_activity_chart.html",
    "dashboard/partials/_campaign_panel.html",
    "dashboard/partials/_system_health.html",
)
_last_rendered: dict[tuple[int, str], str] = {}  # (org id, template) -> HTML last published


def _changed_fragments(org_id: int, context: dict, render) -> str:
    """Only the fragments whose HTML changed since this pulse last published them for the org:
    every byte saved here is saved once per open dashboard."""
    parts = []
    for template in LIVE_FRAGMENTS:
        html = render(template, context)
        if _last_rendered.get((org_id, template)) != html:
            _last_rendered[(org_id, template)] = html
            parts.append(html)
    return "".join(parts)


_stream_seen: dict[int, str] = {}  # org id -> timestamp of the newest event already streamed


def _publish_stream(org, context: dict) -> None:
    """JSON events for API clients: the org's metrics, then each event new since the last tick."""
    from analytics.models import Bot

    metrics = {
        "type": "metrics_update",
        "timestamp": datetime.now(UTC).isoformat(),
        "metrics": context["metrics"],
    }
    publish(stream_group(org.pk), orjson.dumps(metrics).decode())
    seen = newest = _stream_seen.get(org.pk, "")
    bot_ids = dict(Bot.objects.for_org(org).values_list("slug", "id"))
    items = [("new_message", e) for e in context["feed"] if e["kind"] == "message"]
    items += [("ai_activity", a) for a in context["activities"]]
    for kind, item in sorted(items, key=lambda pair: pair[1]["at"]):
        at = item["at"].isoformat()
        if at <= seen:
            continue
        newest = max(newest, at)
        data = {k: v for k, v in item.items() if k not in ("at", "ago", "badge", "badge_label")}
        frame = orjson.dumps({"type": kind, "timestamp": at, "data": data}).decode()
        publish(stream_group(org.pk), frame)
        if item["bot"] in bot_ids:
            publish(stream_bot_group(bot_ids[item["bot"]]), frame)
    _stream_seen[org.pk] = newest
