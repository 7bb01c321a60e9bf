"""A bot's page (figures against the previous period, drill-down charts) and its daily CSV.

Every view is wrapped in org_view (404 for anyone outside the org); the bot is looked up in the
org only, so another org's slug is a 404 like one that does not exist.
"""

from __future__ import annotations

import redis
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from analytics.models import Bot
from analytics.selectors import (
    PERIOD_LENGTHS,
    PERIODS,
    bot_period_summaries,
    bot_rollup_series,
    period_series,
)
from analytics.services.audit import audit_request
from analytics.services.export import CsvStreamingResponse, daily_metrics_csv, export_filename
from dashboard import charts
from dashboard.presenters import (
    chart_card,
    explore_url,
    iso_utc,
    period_figure,
    period_from_query,
    round1,
    round4,
)
from dashboard.views import org_view


@org_view(perm="org.view")
@require_GET
def bot_detail(request, org, bot_slug):
    bot = get_object_or_404(Bot.objects.for_org(org), slug=bot_slug)
    period, notice = period_from_query(request.GET)
    now = timezone.now()
    length = PERIOD_LENGTHS[period.key]
    previous, current = bot_period_summaries(
        org=org, bots=[bot], ranges=[(now - 2 * length, now - length), (now - length, now)]
    )
    try:
        response, volume = period_series(org=org, period=period, bots=[bot], now=now)
    except redis.RedisError:
        response, volume = period_series(org=org, period=period, bots=[bot], now=now, live=False)
        notice = (
            notice + " " if notice else ""
        ) + "Live data is unavailable: the latest hours are missing."
    rollups = bot_rollup_series(org=org, period=period, bots=[bot], now=now)
    urls = [
        explore_url(org, bot=bot.slug, start=iso_utc(p.start), end=iso_utc(p.end)) for p in rollups
    ]
    x = [p.start.strftime("%Y-%m-%dT%H:%M") for p in rollups]
    c, p = current, previous
    figures = [
        period_figure(
            "conversations", "Conversations", c.conversations, p.conversations, "int", None
        ),
        period_figure("messages", "Messages", c.messages, p.messages, "int", None),
        period_figure("avg-response", "Avg response", c.avg_ms, p.avg_ms, "ms", False),
        period_figure("p50-response", "p50 response", c.p50_ms, p.p50_ms, "ms", False),
        period_figure("p95-response", "p95 response", c.p95_ms, p.p95_ms, "ms", False),
        period_figure("p99-response", "p99 response", c.p99_ms, p.p99_ms, "ms", False),
        period_figure("success-rate", "Success rate", c.success_rate, p.success_rate, "pct"),
        period_figure("kb-hit-rate", "KB hit rate", c.kb_hit_rate, p.kb_hit_rate, "pct"),
        period_figure("handoff-rate", "Handoff rate", c.handoff_rate, p.handoff_rate, "pct", False),
        period_figure("csat", "CSAT", c.csat_avg, p.csat_avg, "csat"),
        period_figure(
            "duration",
            "Avg duration",
            c.avg_duration_seconds,
            p.avg_duration_seconds,
            "sec",
            None,
        ),
        period_figure("tokens", "Tokens", c.tokens, p.tokens, "int", None),
        period_figure("cost", "Cost", c.cost_usd, p.cost_usd, "usd", False),
    ]
    if bot.kind == Bot.Kind.AI_EMPLOYEE:
        figures += [
            period_figure("calls", "Calls", c.calls, p.calls, "int"),
            period_figure("bookings", "Bookings", c.bookings, p.bookings, "int"),
            period_figure("revenue", "Revenue", c.revenue, p.revenue, "usd"),
            period_figure("emails", "Emails", c.emails, p.emails, "int"),
            period_figure("tasks", "Tasks", c.tasks, p.tasks, "int"),
        ]
    ms = charts.round_ms
    chart_list = [
        chart_card(
            "response",
            "Response time (ms): average, p50, p95, p99",
            period,
            x,
            urls,
            "ms",
            [
                ("Average", [ms(r.avg_ms) for r in response], charts.ACCENT, "solid"),
                ("p50", [ms(r.p50_ms) for r in response], charts.GOOD, "dot"),
                ("p95", [ms(r.p95_ms) for r in response], charts.WARN, "solid"),
                ("p99", [ms(r.p99_ms) for r in response], "var(--bad)", "dash"),
            ],
        ),
        chart_card(
            "volume",
            "Messages in and out",
            period,
            x,
            urls,
            "messages",
            [
                ("Inbound", [v.inbound for v in volume], charts.ACCENT, "bar"),
                ("Outbound", [v.outbound for v in volume], charts.WARN, "bar"),
            ],
            barmode="stack",
        ),
        chart_card(
            "success",
            "Success rate (%)",
            period,
            x,
            urls,
            "%",
            [
                ("Success rate", [round1(r.success_rate) for r in rollups], charts.GOOD, "solid"),
                ("KB hit rate", [round1(r.kb_hit_rate) for r in rollups], charts.ACCENT, "dot"),
            ],
        ),
        chart_card(
            "duration",
            "Conversation duration (s, average)",
            period,
            x,
            urls,
            "seconds",
            [
                (
                    "Avg duration",
                    [round1(r.avg_duration_seconds) for r in rollups],
                    charts.ACCENT,
                    "solid",
                )
            ],
        ),
        chart_card(
            "tokens",
            "Token usage and cost",
            period,
            x,
            urls,
            "tokens",
            [
                ("Tokens", [r.tokens for r in rollups], charts.ACCENT, "bar"),
                ("Cost (USD)", [round4(r.cost_usd) for r in rollups], charts.WARN, "y2"),
            ],
            y2_title="USD",
        ),
    ]
    if bot.kind == Bot.Kind.AI_EMPLOYEE:
        chart_list.append(
            chart_card(
                "work",
                "Calls, bookings, emails and tasks",
                period,
                x,
                urls,
                "count",
                [
                    ("Calls", [r.calls for r in rollups], charts.ACCENT, "bar"),
                    ("Bookings", [r.bookings for r in rollups], charts.GOOD, "bar"),
                    ("Emails", [r.emails for r in rollups], charts.WARN, "bar"),
                    ("Tasks", [r.tasks for r in rollups], "var(--muted)", "bar"),
                ],
                barmode="stack",
            )
        )
    return render(
        request,
        "dashboard/bot.html",
        {
            "org": org,
            "bot": bot,
            "period": period,
            "periods": list(PERIODS.values()),
            "notice": notice,
            "figures": figures,
            "charts": chart_list,
            "current": current,
            "previous": previous,
            "explore_url": explore_url(
                org, bot=bot.slug, start=iso_utc(now - length), end=iso_utc(now)
            ),
            "daily_url": reverse("dashboard:bot_daily_export", args=[org.slug, bot.slug])
            + f"?period={period.key}",
        },
    )


@org_view(perm="conversations.export")
@require_GET
def bot_daily_export(request, org, bot_slug):
    """The bot's daily metrics over the period (by org-local day) as CSV."""
    bot = get_object_or_404(Bot.objects.for_org(org), slug=bot_slug)
    period, _notice = period_from_query(request.GET)
    today = timezone.now().astimezone(org.tz).date()
    start = today - PERIOD_LENGTHS[period.key] + PERIOD_LENGTHS["24h"]
    start = min(start, today)
    name = export_filename(org, f"daily-{bot.slug}", f"{start:%Y%m%d}-{today:%Y%m%d}")
    audit_request(
        request,
        action="export.downloaded",
        target=name,
        details={"kind": "bot_daily", "bot": bot.slug, "period": period.key},
    )
    return CsvStreamingResponse(
        daily_metrics_csv(org=org, start=start, end=today, bot=bot), filename=name
    )
