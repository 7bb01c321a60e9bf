"""Turn selector output into what the templates show (formatting, the colour of a change, chart
cards and their drill-down links)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import redis
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.timesince import timesince

from analytics.models import Bot, Campaign, Channel
from analytics.redis import get_redis
from analytics.selectors import (
    PERIODS,
    CampaignStatus,
    LiveFigure,
    LiveSnapshot,
    Period,
    ai_employee_cards,
    campaign_status_list,
    ingest_rate_per_minute,
    live_activities,
    live_feed,
    live_minute_series,
    live_snapshot,
    period_get,
)
from dashboard.charts import activity_figure, bucket_label, drill_figure, outcome_pie_figure
from dashboard.presence import connected_viewers


@dataclass(frozen=True)
class Card:
    id: str
    label: str
    value: str
    change: str  # "+12.5%" or "" when there is nothing to compare with
    tone: str  # "good", "bad" or "flat": lower is better for response times and cost

    @property
    def change_label(self) -> str:
        return f"{self.change} vs previous hour" if self.change else "no previous hour"


def _change(figure: LiveFigure, lower_is_better: bool) -> tuple[str, str]:
    change = figure.change
    if change is None:
        return "", "flat"
    if abs(change) < 0.05:
        return "±0%", "flat"
    improved = (change < 0) if lower_is_better else (change > 0)
    return f"{change:+.1f}%", "good" if improved else "bad"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def live_cards(snapshot: LiveSnapshot | None) -> list[Card]:
    """The six live metric cards; `None` (Redis unreachable) shows dashes."""
    if snapshot is None:
        return [Card(id_, label, "—", "", "flat") for id_, label, _ in _CARDS]
    cards = []
    for id_, label, (attr, fmt, lower_is_better) in _CARDS:
        figure = getattr(snapshot, attr)
        if isinstance(figure, LiveFigure):
            change, tone = _change(figure, lower_is_better)
            cards.append(Card(id_, label, fmt(figure.value), change, tone))
        else:
            cards.append(Card(id_, label, fmt(figure), "", "flat"))
    return cards


_CARDS = (
    ("metric-active-now", "Active now", ("active_now", lambda v: f"{v:,}", False)),
    ("metric-avg-response", "Avg response time", ("avg_response_ms", _ms, True)),
    (
        "metric-success-rate",
        "Success rate",
        ("success_rate", lambda v: "—" if v is None else f"{v:.1f}%", False),
    ),
    (
        "metric-messages-hour",
        "Messages / hour",
        ("messages_last_hour", lambda v: f"{v:,.0f}", False),
    ),
    ("metric-p95-response", "p95 response time", ("p95_response_ms", _ms, True)),
    ("metric-cost-hour", "Cost (last hour)", ("cost_last_hour_usd", lambda v: f"${v:,.2f}", True)),
)


def _ago(at: datetime) -> str:
    seconds = (timezone.now() - at).total_seconds()
    if seconds < 60:
        return "just now"
    return f"{timesince(at)} ago"


CHANNEL_LABELS = dict(Channel.choices)


def feed_items(raw: list[dict]) -> list[dict]:
    """Feed entries from the live state, ready for `_feed_rows.html` (text stays untrusted)."""
    items = []
    for entry in raw:
        kind = entry.get("kind", "")
        if kind == "conversation.ended":
            badge = entry.get("status") or "ended"
            label = badge.capitalize()
        elif kind == "conversation.started":
            badge, label = "started", "Started"
        elif entry.get("outcome") in ("failed", "fallback"):
            badge, label = entry["outcome"], entry["outcome"].capitalize()
        else:
            badge, label = "active", "Active"
        channel = CHANNEL_LABELS.get(entry.get("channel", ""), "")
        items.append(
            {**_timed(entry), "badge": badge, "badge_label": label, "channel_label": channel}
        )
    return items


def _timed(entry: dict) -> dict:
    at = datetime.fromisoformat(entry["at"])
    return {**entry, "at": at, "ago": _ago(at)}


@dataclass(frozen=True)
class Scope:
    """What a live view is narrowed to: the whole org, one bot, or one campaign (and its bot)."""

    bot: Bot | None = None
    campaign: Campaign | None = None

    @property
    def figures_bot(self) -> Bot | None:
        """The bot whose live figures the cards and the activity chart show."""
        return self.campaign.bot if self.campaign is not None else self.bot

    @property
    def value(self) -> str:
        """The scope as the page's selector and the query string spell it."""
        if self.campaign is not None:
            return f"campaign:{self.campaign.slug}"
        return f"bot:{self.bot.slug}" if self.bot is not None else ""

    @property
    def label(self) -> str:
        if self.campaign is not None:
            return f"campaign {self.campaign.name}"
        return self.bot.name if self.bot is not None else "all bots and campaigns"

    def shows(self, entry: dict) -> bool:
        """Whether a feed or activity entry belongs to this scope."""
        if self.campaign is not None:
            return entry.get("campaign") == self.campaign.slug
        return self.bot is None or entry.get("bot") == self.bot.slug


WHOLE_ORG = Scope()


def scope_from_query(org, query) -> tuple[Scope, str]:
    """The scope asked for by `?bot=<slug>`, `?campaign=<slug>` or `?scope=bot:<slug>`, and an
    error for a bad one (the page then shows the whole org and says why)."""
    bot_slug, campaign_slug = query.get("bot", ""), query.get("campaign", "")
    kind, _, slug = query.get("scope", "").partition(":")  # the selector's own spelling
    if kind == "bot" and slug:
        bot_slug = slug
    elif kind == "campaign" and slug:
        campaign_slug = slug
    if campaign_slug:
        campaign = (
            Campaign.objects.for_org(org).select_related("bot").filter(slug=campaign_slug).first()
        )
        if campaign is None:
            return WHOLE_ORG, f"No campaign {campaign_slug!r} in {org.name}; showing everything."
        return Scope(campaign=campaign), ""
    if bot_slug:
        bot = Bot.objects.for_org(org).filter(slug=bot_slug).first()
        if bot is None:
            return WHOLE_ORG, f"No bot {bot_slug!r} in {org.name}; showing everything."
        return Scope(bot=bot), ""
    return WHOLE_ORG, ""


def scope_choices(org) -> list[tuple[str, list[tuple[str, str]]]]:
    """The page's scope selector: (group label, [(value, label)]) for bots, then campaigns."""
    bots = [(f"bot:{b.slug}", b.name) for b in Bot.objects.for_org(org).order_by("name")]
    campaigns = [
        (f"campaign:{c.slug}", c.name) for c in Campaign.objects.for_org(org).order_by("name")
    ]
    return [
        (label, options) for label, options in (("Bots", bots), ("Campaigns", campaigns)) if options
    ]


def snapshot_clock() -> int:
    """Redis's clock in µs, read before a snapshot: every fragment root carries it
    (`data-as-of`), so the page keeps the newer of a pushed frame and an HTTP snapshot that
    cross on the wire. One clock for every web and pulse process, whatever their machines."""
    seconds, micros = get_redis().time()
    return seconds * 1_000_000 + micros


def live_context(org, scope: Scope = WHOLE_ORG) -> dict:
    """Everything the live part of the org page shows, for the whole org or one scope; the page,
    polling and pulse share it."""
    bot = scope.figures_bot
    try:
        as_of = snapshot_clock()
        snapshot = live_snapshot(org=org, bot=bot)
        series = live_minute_series(org=org, bot=bot)
        campaigns = [
            CampaignView(c)
            for c in campaign_status_list(org=org)
            if (scope.campaign is None or c.campaign.pk == scope.campaign.pk)
            and (scope.bot is None or c.campaign.bot_id == scope.bot.pk)
        ]
        employees = ai_employee_cards(org=org)
        if scope.bot is not None or scope.campaign is not None:
            employees = [e for e in employees if bot is not None and e.bot.pk == bot.pk]
        feed = [e for e in live_feed(org=org, limit=FEED_SCAN) if scope.shows(e)][:FEED_ROWS]
        activities = [a for a in live_activities(org=org) if scope.shows(a)][:ACTIVITY_ROWS]
        return {
            "scope": scope,
            "as_of": as_of,
            "activity_series": series,
            "activity_figure": activity_figure(series),
            "metrics": asdict(snapshot),
            "cards": live_cards(snapshot),
            "feed": feed_items(feed),
            "employees": employees,
            "activities": [_timed(a) for a in activities],
            "campaigns": campaigns,
            "health": system_health(org, campaigns),
        }
    except redis.RedisError:
        # The page still renders from PostgreSQL; the live figures come back with Redis.
        return {
            "scope": scope,
            "metrics": None,
            "cards": live_cards(None),
            "feed": [],
            "employees": [],
            "activities": [],
        }


FEED_ROWS = 10  # conversation events shown
FEED_SCAN = 50  # the whole live feed, so a narrowed view still finds its rows
ACTIVITY_ROWS = 10


OUTCOME_LABELS = {
    "answered": "Answered",
    "converted": "Converted",
    "busy": "Busy",
    "no_answer": "No answer",
    "failed": "Failed",
    "opt_out": "Opted out",
}


@dataclass(frozen=True)
class CampaignView:
    """A campaign's status plus its outcome bars (widths relative to the largest outcome)."""

    status: CampaignStatus

    def __getattr__(self, name):
        return getattr(self.status, name)

    @property
    def outcome_bars(self) -> list[tuple[dict, int]]:
        top = max(self.status.outcomes.values(), default=0) or 1
        return [
            ({"key": key, "label": OUTCOME_LABELS[key], "percent": round(100 * n / top)}, n)
            for key, n in self.status.outcomes.items()
        ]

    @property
    def pie_id(self) -> str:
        return f"campaign-pie-{self.status.campaign.slug}"

    @property
    def pie_script_id(self) -> str:
        return f"campaign-pie-{self.status.campaign.slug}-figure"

    @property
    def calls_done(self) -> int:
        return sum(self.status.outcomes.values())

    @property
    def outcome_pie(self) -> dict:
        """The outcome donut drawn beside the bars (which hold the same figures as text)."""
        return outcome_pie_figure(
            [(key, OUTCOME_LABELS[key], n) for key, n in self.status.outcomes.items()]
        )

    @property
    def outcome_summary(self) -> str:
        """The donut in words: "Answered 3, Converted 1, …" (outcomes that happened)."""
        return ", ".join(
            f"{OUTCOME_LABELS[key]} {n}" for key, n in self.status.outcomes.items() if n
        )


@dataclass(frozen=True)
class Health:
    answer_rate: float | None
    active_campaigns: int
    messages_per_minute: int
    viewers: int


def system_health(org, campaigns: list) -> Health:
    """The health panel: calls answered, traffic, viewers. The host's CPU and memory are the
    platform's, not the tenant's: staff read them from /api/v1/ops/queues."""
    done = sum(sum(c.outcomes.values()) for c in campaigns)
    answered = sum(
        c.outcomes.get("answered", 0) + c.outcomes.get("converted", 0) for c in campaigns
    )
    return Health(
        answer_rate=100.0 * answered / done if done else None,
        active_campaigns=sum(1 for c in campaigns if c.campaign.status == "active"),
        messages_per_minute=ingest_rate_per_minute(org=org),
        viewers=connected_viewers(org.pk),
    )


# --- explore pages: figures against the previous period, chart cards, drill-down links ---------


@dataclass(frozen=True)
class PeriodFigure:
    id: str
    label: str
    value: str
    change: str  # "+12.5%", "+1.2 pts" or "" when there is nothing to compare with
    tone: str  # good, bad or flat
    previous: str


def _fmt(value, kind: str) -> str:
    if value is None:
        return "—"
    return {
        "int": lambda v: f"{v:,.0f}",
        "ms": lambda v: f"{v:,.0f} ms",
        "pct": lambda v: f"{v:.1f}%",
        "usd": lambda v: f"${v:,.2f}",
        "usd4": lambda v: f"${v:,.4f}",
        "csat": lambda v: f"{v:.2f} / 5",
        "sec": lambda v: f"{v / 60:,.1f} min" if v >= 90 else f"{v:,.0f} s",
    }[kind](value)


def period_figure(
    id_, label, value, previous, kind, higher_is_better: bool | None = True
) -> PeriodFigure:
    """One figure and its change: relative for counts, in points for percentages."""
    change, tone = "", "flat"
    if value is not None and previous is not None:
        if kind == "pct":
            delta = value - previous
            change = "±0 pts" if abs(delta) < 0.05 else f"{delta:+.1f} pts"
        elif previous:
            delta = 100.0 * (value - previous) / previous
            change = "±0%" if abs(delta) < 0.05 else f"{delta:+.1f}%"
        else:
            delta = value  # from zero: a change, but no percentage
            change = "new" if value else "±0%"
        if higher_is_better is not None and change not in ("±0%", "±0 pts"):
            better = delta > 0 if higher_is_better else delta < 0
            tone = "good" if better else "bad"
    return PeriodFigure(id_, label, _fmt(value, kind), change, tone, _fmt(previous, kind))


def period_from_query(query) -> tuple[Period, str]:
    """The period the `period` parameter names, or the default and a notice saying so."""
    raw = query.get("period")
    if raw and raw not in PERIODS:
        return period_get(None), f"Unknown period “{raw[:20]}”; showing the last 24 hours."
    return period_get(raw), ""


def iso_utc(moment: datetime) -> str:
    """A moment as the explorer's `start`/`end` parameters take it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def explore_url(org, **params) -> str:
    """A link to the explorer filtered by `params` (empty ones left out)."""
    base = reverse("dashboard:conversations", kwargs={"org_slug": org.slug})
    return f"{base}?{urlencode({k: v for k, v in params.items() if v not in (None, '')})}"


def round1(value):
    return None if value is None else round(value, 1)


def round4(value):
    return None if value is None else round(value, 4)


def chart_card(key, title, period, x, urls, y_title, series, **layout) -> dict:
    """A chart, its figure and the rows of its table alternative (each row links to the explorer)."""
    traces = []
    for name, values, color, style in series:
        trace = {"name": name, "y": values, "color": color}
        if style == "bar":
            trace["type"] = "bar"
        elif style == "y2":
            trace["axis"] = "y2"
        else:
            trace["dash"] = style
        traces.append(trace)
    fig = drill_figure(period=period, x=x, traces=traces, y_title=y_title, urls=urls, **layout)
    labels = [bucket_label(period, datetime.fromisoformat(v)) for v in x]
    rows = [
        {"label": label, "url": url, "values": [s[1][i] for s in series]}
        for i, (label, url) in enumerate(zip(labels, urls, strict=True))
    ]
    return {
        "key": key,
        "title": title,
        "figure": fig,
        "columns": [s[0] for s in series],
        "rows": rows,
        # The table alternative's body, built here: the same markup through the template
        # language cost ~20 ms on a 30-day bot page (7 tables of 30 rows).
        "tbody": format_html_join(
            "",
            '<tr><th scope="row"><a href="{}">{}</a></th>{}</tr>',
            (
                (
                    row["url"],
                    row["label"],
                    format_html_join(
                        "",
                        '<td class="num">{}</td>',
                        (("—" if v is None else v,) for v in row["values"]),
                    ),
                )
                for row in rows
            ),
        ),
    }
