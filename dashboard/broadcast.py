"""The only publisher of live frames.

Rendering happens once per org (and subscribed scope) and tick, in `pulse`; a frame is published
once to Redis on `{prefix}:ws:{group}`, where each web process's hub (dashboard.hub) fans it out to
its local sockets.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from datetime import UTC, datetime

import orjson
from django.template.loader import render_to_string
from django.utils import timezone

from analytics.live_keys import dirty_key, stream_digest
from analytics.models import Bot, Campaign, Organization
from analytics.redis import get_redis
from analytics.selectors import live_snapshot, live_stream_window
from analytics.services.alerts import firing_alerts
from analytics.services.live import live_stream_claim
from config.outage import TRANSIENT
from dashboard import presence
from dashboard.hub import channel_prefix
from dashboard.presenters import Scope, feed_items, live_context
from dashboard.pulse_shards import PulseShard


def org_group(org_id: int) -> str:
    """The dashboard group of a whole org; scoped groups extend it (see scoped_group)."""
    return f"org.{org_id}"


def scoped_group(org_id: int, *, bot_id: int | None = None, campaign_id: int | None = None) -> str:
    """The dashboard group of one bot or one campaign of an org."""
    if campaign_id is not None:
        return f"org.{org_id}.campaign.{campaign_id}"
    if bot_id is not None:
        return f"org.{org_id}.bot.{bot_id}"
    return org_group(org_id)


def stream_group(org_id: int, *, bot_id: int | None = None, campaign_id: int | None = None) -> str:
    """The API stream group of an org, or of one of its bots or campaigns."""
    return "stream." + scoped_group(org_id, bot_id=bot_id, campaign_id=campaign_id)


def group_org(group: str) -> int | None:
    """The org a dashboard or stream group belongs to (every group name carries it)."""
    parts = group.removeprefix("stream.").split(".")
    return int(parts[1]) if len(parts) >= 2 and parts[0] == "org" and parts[1].isdigit() else None


def publish(group: str, frame: str) -> int:
    """Publish one rendered frame to every socket of `group` in every web process."""
    return get_redis().publish(channel_prefix() + group, frame)


HEARTBEAT_SECONDS = 5.0  # watched orgs are re-rendered this often without new data (health, status)
_last_heartbeat = 0.0


def pulse_tick(shard: PulseShard | None = None) -> int:
    """Render and publish the live fragments of every org with new data (and, every few seconds,
    of every watched org); returns how many orgs had new data. With a `shard`, only the orgs this
    pulse owns among the live pulses (dashboard.pulse_shards); the others' marks stay for them."""
    global _last_heartbeat
    if shard is None:
        pipe = get_redis().pipeline(transaction=True)
        pipe.smembers(dirty_key())
        pipe.delete(dirty_key())
        dirty, _ = pipe.execute()
    else:
        shard.beat()
        dirty = {m for m in get_redis().smembers(dirty_key()) if shard.owns(int(m))}
        if dirty:
            # A mark added since SMEMBERS goes too: this tick renders the org's newest state.
            get_redis().srem(dirty_key(), *dirty)
    org_ids = {int(m) for m in dirty}
    members = presence.group_members()
    heartbeat = time.monotonic() - _last_heartbeat >= HEARTBEAT_SECONDS
    watched = {group for group, n in members.items() if n > 0}
    # A group watched since the last tick is rendered now: data that arrived between a socket's
    # subscribing and its process's presence report would otherwise wait for the heartbeat.
    fresh = watched if heartbeat else watched - _watched_before
    _forget(_watched_before - watched)
    _watched_before.clear()
    _watched_before.update(watched)
    if heartbeat:
        _last_heartbeat = time.monotonic()
    wanted = {org_id for org_id in map(group_org, fresh) if org_id is not None}
    if shard is not None:
        wanted = {org_id for org_id in wanted if shard.owns(org_id)} | _take_over(shard, watched)
    org_ids |= wanted
    try:
        for org in Organization.objects.filter(pk__in=org_ids):
            _pulse_org(org, members, heartbeat=heartbeat)
    except TRANSIENT:
        # PostgreSQL or Redis went away mid-tick: these orgs still have news to push once it is
        # back (best effort: with Redis down the hub's sockets resync on reconnect anyway).
        with contextlib.suppress(*TRANSIENT):
            if dirty:
                get_redis().sadd(dirty_key(), *dirty)
        raise
    return len(dirty)


def forget_published() -> None:
    """Publish every fragment again at the next tick (after an outage, frames may have been
    lost on their way, and sockets that reconnect need the whole picture)."""
    global _last_heartbeat
    _last_rendered.clear()
    _watched_before.clear()
    _owned_before.clear()
    _last_heartbeat = 0.0


_watched_before: set[str] = set()  # groups somebody watched at the last tick
_owned_before: set[int] = set()  # watched orgs this pulse owned at the last tick


def _take_over(shard: PulseShard, watched: set[str]) -> set[int]:
    """The watched orgs this pulse owns now but did not at its last tick (a pulse died or left):
    rendered in full at once. Orgs it no longer owns are forgotten, so if one comes back its
    first frame is whole again, never a diff against what another pulse sent meanwhile."""
    mine = {o for o in map(group_org, watched) if o is not None and shard.owns(o)}
    gained, lost = mine - _owned_before, _owned_before - mine
    if lost:
        _forget({key[0] for key in _last_rendered if group_org(key[0]) in lost})
        for org_id in lost:
            StreamPublisher.forget(org_id)
    _owned_before.clear()
    _owned_before.update(mine)
    return gained


def _forget(groups: set[str]) -> None:
    """Nobody watches these any more: drop what was last published to them, so a viewer who
    comes back gets every fragment again."""
    for key in [key for key in _last_rendered if key[0] in groups]:
        del _last_rendered[key]


def _pulse_org(org, members, *, heartbeat: bool) -> None:
    """One org: its whole-org frame, a frame per watched bot or campaign, and its JSON stream."""
    context = {**live_context(org), "oob": True}
    frame = _changed_fragments(org_group(org.pk), context, render_to_string)
    if frame or heartbeat:
        publish(org_group(org.pk), frame or _heartbeat_frame(context, render_to_string))
    for group, scope in _watched_scopes(org, members, prefix=org_group(org.pk) + "."):
        scoped = {**live_context(org, scope), "oob": True}
        frame = _changed_fragments(group, scoped, render_to_string)
        if frame or heartbeat:
            publish(group, frame or _heartbeat_frame(scoped, render_to_string))
    StreamPublisher(org, context, members).publish(heartbeat=heartbeat)


def _watched_scopes(org, members, *, prefix: str):
    """(group, Scope) for each bot or campaign group of the org that somebody watches."""
    wanted = {"bot": set(), "campaign": set()}
    for group, n in members.items():
        if n and group.startswith(prefix):
            kind, _, pk = group[len(prefix) :].partition(".")
            if kind in wanted and pk.isdigit():
                wanted[kind].add(int(pk))
    if wanted["bot"]:
        for bot in Bot.objects.for_org(org).filter(pk__in=wanted["bot"]):
            yield scoped_group(org.pk, bot_id=bot.pk), Scope(bot=bot)
    if wanted["campaign"]:
        campaigns = Campaign.objects.for_org(org).select_related("bot")
        for campaign in campaigns.filter(pk__in=wanted["campaign"]):
            yield scoped_group(org.pk, campaign_id=campaign.pk), Scope(campaign=campaign)


LIVE_FRAGMENTS = (
    "dashboard/partials/_live_metrics.html",
    "dashboard/partials/_feed_rows.html",
    "dashboard/partials/_employee_cards.html",
    "dashboard/partials/_activity_rows.html",
    "dashboard/partials/_activity_chart.html",
    "dashboard/partials/_campaign_panel.html",
    "dashboard/partials/_system_health.html",
)
_last_rendered: dict[tuple[str, str], str] = {}  # (group, template) -> HTML last published


_AS_OF_MARK = "0"  # rendered in place of the snapshot time, so an unchanged fragment compares equal


def _changed_fragments(group: str, context: dict, render) -> str:
    """Only the fragments whose HTML changed since this pulse last published them to the group:
    every byte saved here is saved once per open dashboard. Each published fragment carries the
    snapshot's time (`data-as-of`), which is left out of the comparison."""
    parts = []
    as_of = context.get("as_of")
    marked = {**context, "as_of": _AS_OF_MARK} if as_of else context
    for template in LIVE_FRAGMENTS:
        html = render(template, marked)
        if _last_rendered.get((group, template)) != html:
            _last_rendered[(group, template)] = html
            if as_of:
                html = html.replace(f'data-as-of="{_AS_OF_MARK}"', f'data-as-of="{as_of}"', 1)
            parts.append(html)
    return "".join(parts)


LIVE_HEARTBEAT = "dashboard/partials/_live_heartbeat.html"


def _heartbeat_frame(context: dict, render) -> str:
    """What a watched group gets at a heartbeat when none of its fragments changed: the page's
    staleness watchdog (static/dashboard/live.js) learns that pulse is alive and that what it
    shows is still current as of the snapshot's time. Without it an idle dashboard would hear
    nothing and could not tell quiet figures from frozen ones."""
    return render(LIVE_HEARTBEAT, context)


class StreamPublisher:
    """JSON events for API clients of one org, published to the org's stream group and to the
    bot and campaign groups each event concerns (scoped groups only when somebody listens)."""

    ITEM_KEYS_HIDDEN = ("at", "ago", "badge", "badge_label", "channel_label")
    _campaign_status: dict[int, dict[str, str]] = {}  # org id -> campaign slug -> last status

    @classmethod
    def forget(cls, org_id: int) -> None:
        cls._campaign_status.pop(org_id, None)

    def __init__(self, org, context: dict, members) -> None:
        self.org, self.context, self.members = org, context, members
        self.bots = {b.slug: b for b in Bot.objects.for_org(org)}
        self.campaigns = {
            c.slug: c for c in Campaign.objects.for_org(org).select_related("bot").order_by("pk")
        }
        self.now = datetime.now(UTC).isoformat()

    def _groups(self, *, bot: str = "", campaign: str = "") -> list[str]:
        groups = [stream_group(self.org.pk)]
        if bot in self.bots:
            groups.append(stream_group(self.org.pk, bot_id=self.bots[bot].pk))
        if campaign in self.campaigns:
            groups.append(stream_group(self.org.pk, campaign_id=self.campaigns[campaign].pk))
        return groups

    def _send(self, groups: list[str], kind: str, timestamp: str, **body) -> None:
        frame = orjson.dumps({"type": kind, "timestamp": timestamp, **body}).decode()
        for group in groups:
            publish(group, frame)

    def _watched(self, group: str) -> bool:
        return self.members.get(group, 0) > 0

    def publish(self, *, heartbeat: bool) -> None:
        if self.context.get("metrics") is None:
            return  # Redis is down: nothing live to say
        self._metrics()
        self._items()
        self._campaign_changes()
        if heartbeat:
            self._health()

    def _metrics(self) -> None:
        self._send(
            [stream_group(self.org.pk)], "metrics_update", self.now, metrics=self.context["metrics"]
        )
        for slug, bot in self.bots.items():
            group = stream_group(self.org.pk, bot_id=bot.pk)
            if self._watched(group):
                snapshot = asdict(live_snapshot(org=self.org, bot=bot))
                self._send([group], "metrics_update", self.now, bot=slug, metrics=snapshot)
        for view in self.context.get("campaigns", []):
            group = stream_group(self.org.pk, campaign_id=view.campaign.pk)
            if self._watched(group):
                self._send(
                    [group],
                    "metrics_update",
                    self.now,
                    campaign=view.campaign.slug,
                    metrics=campaign_figures(view),
                )

    def _items(self) -> None:
        """new_message, ai_activity and call_event for each feed or activity entry that no pulse
        has sent yet, oldest first. Which ones those are is claimed in Redis (live_stream_claim),
        not remembered here: the pulse that takes an org over, or two that both render it for a
        tick while one joins, send each event once; an event that arrives late (an older
        timestamp than one already sent, from a slower request or another web process) is still
        sent."""
        entries = []
        for list_name, raw in live_stream_window(org=self.org):
            entry = orjson.loads(raw)
            if list_name == "acts":
                kind, item = "ai_activity", {**entry, "at": datetime.fromisoformat(entry["at"])}
            elif entry.get("kind") == "message":
                kind, item = "new_message", feed_items([entry])[0]
            elif entry.get("campaign") or entry.get("call_outcome"):
                kind, item = "call_event", feed_items([entry])[0]
            else:
                continue
            entries.append((stream_digest(list_name, raw), kind, item))
        if not entries:
            return
        fresh = live_stream_claim(org_id=self.org.pk, window=[digest for digest, _, _ in entries])
        for digest, kind, item in sorted(entries, key=lambda e: e[2]["at"]):
            if digest not in fresh:
                continue
            data = {k: v for k, v in item.items() if k not in self.ITEM_KEYS_HIDDEN}
            if kind == "call_event":
                data["event"] = item["kind"].removeprefix("conversation.")
            frame = orjson.dumps(
                {"type": kind, "timestamp": item["at"].isoformat(), "data": data}
            ).decode()
            for group in self._groups(bot=item.get("bot", ""), campaign=item.get("campaign", "")):
                publish(group, frame)

    def _campaign_changes(self) -> None:
        """campaign_status_change when a campaign's status differs from the one last seen."""
        last = self._campaign_status.get(self.org.pk)
        current = {slug: c.status for slug, c in self.campaigns.items()}
        self._campaign_status[self.org.pk] = current
        if last is None:
            return  # first sight of this org since pulse started: nothing to compare with
        for slug, status in current.items():
            if last.get(slug, status) != status:
                campaign = self.campaigns[slug]
                bot = campaign.bot.slug if campaign.bot else ""
                self._send(
                    self._groups(bot=bot, campaign=slug),
                    "campaign_status_change",
                    self.now,
                    data={
                        "campaign": slug,
                        "name": campaign.name,
                        "status": status,
                        "previous": last[slug],
                    },
                )

    def _health(self) -> None:
        health = self.context.get("health")
        if health is None:
            return
        groups = [g for g in self.members if g.startswith(stream_group(self.org.pk))]
        self._send(
            sorted(set(groups) | {stream_group(self.org.pk)}),
            "system_health_update",
            self.now,
            data=asdict(health),
        )


def campaign_figures(view) -> dict:
    """A campaign's live figures as the stream sends them."""
    return {
        "campaign": view.campaign.slug,
        "status": view.campaign.status,
        "attempts": view.attempts,
        "active_calls": view.active_calls,
        "dialing_per_min": view.dialing_per_min,
        "queue_depth": view.queue_depth,
        "answer_rate": view.answer_rate,
        "conversion_rate": view.conversion_rate,
        "outcomes": view.outcomes,
    }


def alerts_publish(*, org, changed: list) -> None:
    """Push the org's alert banner to every dashboard and one JSON `alert` event per change."""
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
                "id": event.pk,
                "change": what,
                "rule_id": event.rule_id,
                "rule": event.rule_name,
                "metric": event.metric,
                "scope": event.scope_label,
                "severity": event.severity,
                "status": event.status,
                "value": event.value,
                "threshold": event.threshold,
                "started_at": event.started_at.isoformat(),
                "resolved_at": event.resolved_at.isoformat() if event.resolved_at else None,
            },
        }
        publish(stream_group(org.pk), orjson.dumps(frame).decode())
