"""Explore and export: the conversation explorer, transcripts, bot and campaign pages, CSV exports.

Every view is wrapped in org_view (404 for anyone outside the org); objects are looked up in the
org only, so another org's id or slug is a 404 like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import redis
from django.conf import settings
from django.http import FileResponse, Http404, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.views.decorators.http import require_GET

from analytics.filters import (
    DEFAULT_PERIOD,
    PERIOD_CHOICES,
    SORTS,
    conversation_filter,
)
from analytics.models import Bot, CallOutcome, Campaign, Conversation, Message
from analytics.selectors import (
    CALL_OUTCOME_ORDER,
    PERIOD_LENGTHS,
    PERIODS,
    Period,
    bot_period_summaries,
    bot_rollup_series,
    campaign_outcome_series,
    campaign_period_summary,
    period_get,
    period_series,
)
from analytics.services.audit import audit_request, export_details
from analytics.services.export import (
    CsvStreamingResponse,
    conversations_csv,
    count_capped,
    daily_metrics_csv,
    export_filename,
    export_job_get,
    export_job_start,
    messages_csv,
)
from dashboard import charts
from dashboard.views import org_view

PAGE_SIZE = 50
COUNT_CAP = 10_000
SEARCH_COUNT_CAP = 1_000
TRANSCRIPT_LIMIT = 2_000


# --- the explorer ------------------------------------------------------------------------------


MAX_PAGE = 1_000_000


def _page_number(raw: str | None) -> tuple[int, str]:
    if raw in (None, ""):
        return 1, ""
    try:
        page = int(raw)
    except ValueError:
        return 1, f"“{raw[:20]}” is not a page number; showing the first page."
    if page < 1:
        return 1, "Pages start at 1; showing the first page."
    if page > MAX_PAGE:  # its offset would not even fit the database's integers
        return 1, f"There is no page {raw[:20]}; showing the first page."
    return page, ""


def _query(data: QueryDict, **changes) -> str:
    """The query string with some parameters changed (None removes one); empty values dropped."""
    q = data.copy()
    for key, value in changes.items():
        q.pop(key, None)
        if value is not None:
            q[key] = value
    return urlencode([(k, v) for k, vs in q.lists() for v in vs if v != ""])


def _sort_links(data: QueryDict, current: str) -> dict[str, dict]:
    """For each sortable column: the link that sorts by it (toggling direction) and its state."""
    links = {}
    for key in SORTS:
        if current == f"-{key}":
            target, state = key, "descending"
        elif current == key:
            target, state = f"-{key}", "ascending"
        else:
            target, state = f"-{key}", "none"
        links[key] = {"query": _query(data, sort=target, page=None), "state": state}
    return links


def _explorer_context(request, org) -> dict:
    filters = conversation_filter(request.GET, org=org, request=request)
    page, page_error = _page_number(request.GET.get("page"))
    context = {
        "org": org,
        "filters": filters,
        "form": filters.form,
        "rows": [],
        "page": page,
        "page_error": page_error,
        "has_next": False,
        "total": None,
        "total_capped": False,
        "query": _query(request.GET, page=None),
        "periods": PERIOD_CHOICES,
        "default_period": DEFAULT_PERIOD,
    }
    if not filters.is_valid():
        return context
    queryset = filters.qs.select_related("bot", "campaign", "metrics")
    offset = (page - 1) * PAGE_SIZE
    rows = list(queryset[offset : offset + PAGE_SIZE + 1])
    # Counting a common search term means probing every conversation counted: count less.
    cap = SEARCH_COUNT_CAP if filters.form.cleaned_data.get("q") else COUNT_CAP
    total = count_capped(filters.qs, cap + 1)
    if page > 1 and not rows:
        last = max(1, -(-min(total, cap) // PAGE_SIZE))
        context["page_error"] = (
            f"Page {page} is past the end of the results (the last page is {last})."
            if total <= cap
            else f"Page {page} is past the end of the results."
        )
    context.update(
        rows=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        total=min(total, cap),
        total_capped=total > cap,
        first_row=offset + 1,
        last_row=offset + min(len(rows), PAGE_SIZE),
        prev_query=_query(request.GET, page=str(page - 1) if page > 2 else None),
        next_query=_query(request.GET, page=str(page + 1)),
        sort=filters.sort_key,
        sort_links=_sort_links(request.GET, filters.sort_key),
        time_range=filters.time_range,
    )
    return context


@org_view(perm="conversations.explore")
@require_GET
def conversations(request, org):
    """The explorer: filters, search, sorting and pages; HTMX swaps only the results."""
    context = _explorer_context(request, org)
    status = 400 if not context["filters"].is_valid() else 200
    template = "dashboard/conversations.html"
    if request.htmx and not request.htmx.boosted:
        template += "#results"
        status = 200  # htmx swaps only 2xx answers; the errors are in the fragment
    return render(request, template, context, status=status)


@org_view(perm="conversations.export")
@require_GET
def conversations_export(request, org):
    """CSV of exactly the explorer's view (`?kind=messages` for their messages); a large export
    becomes a background job with a download link."""
    filters = conversation_filter(request.GET, org=org, request=request)
    if not filters.is_valid():
        context = _explorer_context(request, org)
        return render(request, "dashboard/conversations.html", context, status=400)
    kind = "messages" if request.GET.get("kind") == "messages" else "conversations"
    name = export_filename(org, kind, filters.time_range.slug)
    # Messages run about ten to a conversation: the same size limit counts them that way.
    limit = settings.EXPORT_ASYNC_ROWS // (10 if kind == "messages" else 1)
    if count_capped(filters.qs, limit + 1) > limit:
        job = export_job_start(
            org=org,
            kind=kind,
            query=_query(request.GET, page=None),
            filename=name,
            user=request.user,
        )
        return redirect("dashboard:export_job", org_slug=org.slug, job_id=job.id)
    if kind == "messages":
        chunks = messages_csv(org=org, conversations=filters.qs)
    else:
        chunks = conversations_csv(filters.qs)
    audit_request(request, action="export.downloaded", target=name,
                  details=export_details(request.GET, kind=kind))  # fmt: skip
    return CsvStreamingResponse(chunks, filename=name)


@org_view(perm="conversations.export")
@require_GET
def export_job(request, org, job_id):
    """A background export's state; the page polls until the file is ready."""
    job = export_job_get(org=org, job_id=str(job_id), user=request.user)
    if job is None:
        raise Http404("No such export.")
    template = "dashboard/export_job.html"
    if request.htmx:
        template += "#state"
    return render(request, template, {"org": org, "job": job})


@org_view(perm="conversations.export")
@require_GET
def export_job_download(request, org, job_id):
    job = export_job_get(org=org, job_id=str(job_id), user=request.user)
    if job is None or job.status != "ready" or not job.path.exists():
        raise Http404("No such export, or it is not ready yet.")
    audit_request(request, action="export.downloaded", target=job.filename,
                  details={"kind": job.kind, "background_job": str(job.id)})  # fmt: skip
    return FileResponse(
        open(job.path, "rb"),  # noqa: SIM115 - FileResponse closes it
        as_attachment=True,
        filename=job.filename,
        content_type="text/csv; charset=utf-8",
    )


# --- transcript --------------------------------------------------------------------------------


@org_view(perm="conversations.view")
@require_GET
def conversation_detail(request, org, conversation_id):
    conversation = get_object_or_404(
        Conversation.objects.for_org(org).select_related("bot", "campaign"), pk=conversation_id
    )
    messages = list(
        Message.objects.for_org(org)
        .filter(conversation_id=conversation.pk)
        .order_by("created_at", "id")[: TRANSCRIPT_LIMIT + 1]
    )
    metrics = getattr(conversation, "metrics", None) if _has_metrics(conversation) else None
    replies = [m for m in messages if m.direction == "outbound"]
    timed = [m.response_time_ms for m in replies if m.response_time_ms is not None]
    computed = {
        "messages": len(messages[:TRANSCRIPT_LIMIT]),
        "avg_response_ms": sum(timed) / len(timed) if timed else None,
        "tokens": sum(m.tokens for m in messages),
        "cost_usd": sum(m.cost_usd for m in messages),
        "kb_hits": sum(1 for m in messages if m.kb_hit),
    }
    return render(
        request,
        "dashboard/conversation_detail.html",
        {
            "org": org,
            "conversation": conversation,
            # Not "messages": base.html shows the messages framework's flash messages under that name.
            "transcript": messages[:TRANSCRIPT_LIMIT],
            "truncated": len(messages) > TRANSCRIPT_LIMIT,
            "metrics": metrics,
            "computed": computed,
            "back_query": request.GET.get("back", ""),
        },
    )


def _has_metrics(conversation: Conversation) -> bool:
    try:
        conversation.metrics  # noqa: B018 - a reverse one-to-one raises when missing
    except Conversation.metrics.RelatedObjectDoesNotExist:
        return False
    return True


# --- figures with their change against the previous period -------------------------------------


@dataclass(frozen=True)
class Figure:
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


def figure(id_, label, value, previous, kind, higher_is_better: bool | None = True) -> Figure:
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
    return Figure(id_, label, _fmt(value, kind), change, tone, _fmt(previous, kind))


def _period_from_request(request) -> tuple[Period, str]:
    raw = request.GET.get("period")
    if raw and raw not in PERIODS:
        return period_get(None), f"Unknown period “{raw[:20]}”; showing the last 24 hours."
    return period_get(raw), ""


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _explore_url(org, **params) -> str:
    base = reverse("dashboard:conversations", kwargs={"org_slug": org.slug})
    return f"{base}?{urlencode({k: v for k, v in params.items() if v not in (None, '')})}"


def _bucket_label(period: Period, start: datetime) -> str:
    return start.strftime(charts._TIME_FORMATS[period.key][2])


# --- bot page ----------------------------------------------------------------------------------


@org_view(perm="org.view")
@require_GET
def bot_detail(request, org, bot_slug):
    bot = get_object_or_404(Bot.objects.for_org(org), slug=bot_slug)
    period, notice = _period_from_request(request)
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
        _explore_url(org, bot=bot.slug, start=_iso_utc(p.start), end=_iso_utc(p.end))
        for p in rollups
    ]
    x = [p.start.strftime("%Y-%m-%dT%H:%M") for p in rollups]
    c, p = current, previous
    figures = [
        figure("conversations", "Conversations", c.conversations, p.conversations, "int", None),
        figure("messages", "Messages", c.messages, p.messages, "int", None),
        figure("avg-response", "Avg response", c.avg_ms, p.avg_ms, "ms", False),
        figure("p50-response", "p50 response", c.p50_ms, p.p50_ms, "ms", False),
        figure("p95-response", "p95 response", c.p95_ms, p.p95_ms, "ms", False),
        figure("p99-response", "p99 response", c.p99_ms, p.p99_ms, "ms", False),
        figure("success-rate", "Success rate", c.success_rate, p.success_rate, "pct"),
        figure("kb-hit-rate", "KB hit rate", c.kb_hit_rate, p.kb_hit_rate, "pct"),
        figure("handoff-rate", "Handoff rate", c.handoff_rate, p.handoff_rate, "pct", False),
        figure("csat", "CSAT", c.csat_avg, p.csat_avg, "csat"),
        figure(
            "duration",
            "Avg duration",
            c.avg_duration_seconds,
            p.avg_duration_seconds,
            "sec",
            None,
        ),
        figure("tokens", "Tokens", c.tokens, p.tokens, "int", None),
        figure("cost", "Cost", c.cost_usd, p.cost_usd, "usd", False),
    ]
    if bot.kind == Bot.Kind.AI_EMPLOYEE:
        figures += [
            figure("calls", "Calls", c.calls, p.calls, "int"),
            figure("bookings", "Bookings", c.bookings, p.bookings, "int"),
            figure("revenue", "Revenue", c.revenue, p.revenue, "usd"),
            figure("emails", "Emails", c.emails, p.emails, "int"),
            figure("tasks", "Tasks", c.tasks, p.tasks, "int"),
        ]
    ms = charts._ms
    chart_list = [
        _chart(
            "response", "Response time (ms): average, p50, p95, p99", period, x, urls, "ms",
            [("Average", [ms(r.avg_ms) for r in response], charts.ACCENT, "solid"),
             ("p50", [ms(r.p50_ms) for r in response], charts.GOOD, "dot"),
             ("p95", [ms(r.p95_ms) for r in response], charts.WARN, "solid"),
             ("p99", [ms(r.p99_ms) for r in response], "var(--bad)", "dash")],
        ),
        _chart(
            "volume", "Messages in and out", period, x, urls, "messages",
            [("Inbound", [v.inbound for v in volume], charts.ACCENT, "bar"),
             ("Outbound", [v.outbound for v in volume], charts.WARN, "bar")],
            barmode="stack",
        ),
        _chart(
            "success", "Success rate (%)", period, x, urls, "%",
            [("Success rate", [_round1(r.success_rate) for r in rollups], charts.GOOD, "solid"),
             ("KB hit rate", [_round1(r.kb_hit_rate) for r in rollups], charts.ACCENT, "dot")],
        ),
        _chart(
            "duration", "Conversation duration (s, average)", period, x, urls, "seconds",
            [("Avg duration", [_round1(r.avg_duration_seconds) for r in rollups], charts.ACCENT,
              "solid")],
        ),
        _chart(
            "tokens", "Token usage and cost", period, x, urls, "tokens",
            [("Tokens", [r.tokens for r in rollups], charts.ACCENT, "bar"),
             ("Cost (USD)", [_round4(r.cost_usd) for r in rollups], charts.WARN, "y2")],
            y2_title="USD",
        ),
    ]  # fmt: skip
    if bot.kind == Bot.Kind.AI_EMPLOYEE:
        chart_list.append(
            _chart(
                "work", "Calls, bookings, emails and tasks", period, x, urls, "count",
                [("Calls", [r.calls for r in rollups], charts.ACCENT, "bar"),
                 ("Bookings", [r.bookings for r in rollups], charts.GOOD, "bar"),
                 ("Emails", [r.emails for r in rollups], charts.WARN, "bar"),
                 ("Tasks", [r.tasks for r in rollups], "var(--muted)", "bar")],
                barmode="stack",
            )
        )  # fmt: skip
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
            "explore_url": _explore_url(
                org, bot=bot.slug, start=_iso_utc(now - length), end=_iso_utc(now)
            ),
            "daily_url": reverse("dashboard:bot_daily_export", args=[org.slug, bot.slug])
            + f"?period={period.key}",
        },
    )


def _round1(value):
    return None if value is None else round(value, 1)


def _round4(value):
    return None if value is None else round(value, 4)


def _chart(key, title, period, x, urls, y_title, series, **layout) -> dict:
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
    fig = charts.drill_figure(
        period=period, x=x, traces=traces, y_title=y_title, urls=urls, **layout
    )
    labels = [_bucket_label(period, datetime.fromisoformat(v)) for v in x]
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
                (row["url"], row["label"], format_html_join(
                    "", '<td class="num">{}</td>', (("—" if v is None else v,) for v in row["values"])
                ))
                for row in rows
            ),
        ),
    }  # fmt: skip


@org_view(perm="conversations.export")
@require_GET
def bot_daily_export(request, org, bot_slug):
    """The bot's daily metrics over the period (by org-local day) as CSV."""
    bot = get_object_or_404(Bot.objects.for_org(org), slug=bot_slug)
    period, _notice = _period_from_request(request)
    today = timezone.now().astimezone(org.tz).date()
    start = today - PERIOD_LENGTHS[period.key] + PERIOD_LENGTHS["24h"]
    start = min(start, today)
    name = export_filename(org, f"daily-{bot.slug}", f"{start:%Y%m%d}-{today:%Y%m%d}")
    audit_request(request, action="export.downloaded", target=name,
                  details={"kind": "bot_daily", "bot": bot.slug, "period": period.key})  # fmt: skip
    return CsvStreamingResponse(
        daily_metrics_csv(org=org, start=start, end=today, bot=bot), filename=name
    )


# --- campaign page -----------------------------------------------------------------------------


@org_view(perm="org.view")
@require_GET
def campaign_detail(request, org, campaign_slug):
    campaign = get_object_or_404(
        Campaign.objects.for_org(org).select_related("bot"), slug=campaign_slug
    )
    period, notice = _period_from_request(request)
    now = timezone.now()
    length = PERIOD_LENGTHS[period.key]
    c = campaign_period_summary(org=org, campaign=campaign, start=now - length, end=now)
    p = campaign_period_summary(
        org=org, campaign=campaign, start=now - 2 * length, end=now - length
    )
    labels = dict(CallOutcome.choices)
    figures = [
        figure("attempts", "Call attempts", c.attempts, p.attempts, "int", None),
        figure("answer-rate", "Answer rate", c.answer_rate, p.answer_rate, "pct"),
        figure("conversion-rate", "Conversion rate", c.conversion_rate, p.conversion_rate, "pct"),
        figure("handoffs", "Handoffs", c.handoffs, p.handoffs, "int", False),
        figure("csat", "CSAT", c.csat_avg, p.csat_avg, "csat"),
        figure(
            "duration",
            "Avg duration",
            c.avg_duration_seconds,
            p.avg_duration_seconds,
            "sec",
            None,
        ),
        *(
            figure(
                f"outcome-{o}",
                labels[o],
                c.outcomes[o],
                p.outcomes[o],
                "int",
                {"converted": True, "answered": True}.get(o, False),
            )
            for o in CALL_OUTCOME_ORDER
        ),
    ]
    series = campaign_outcome_series(org=org, campaign=campaign, period=period, now=now)
    urls = [
        _explore_url(org, campaign=campaign.slug, start=_iso_utc(s.start), end=_iso_utc(s.end))
        for s in series
    ]
    x = [s.start.strftime("%Y-%m-%dT%H:%M") for s in series]
    outcome_chart = _chart(
        "outcomes", "Call attempts and outcomes", period, x, urls, "calls",
        [(labels[o], [s.outcomes[o] for s in series], f"var(--o-{o})", "bar")
         for o in CALL_OUTCOME_ORDER],
        barmode="stack",
    )  # fmt: skip
    start, end = _iso_utc(now - length), _iso_utc(now)
    outcome_urls = {
        o: _explore_url(org, campaign=campaign.slug, call_outcome=o, start=start, end=end)
        for o in CALL_OUTCOME_ORDER
    }
    pie = charts.outcome_pie_drill_figure(
        [(o, labels[o], c.outcomes[o]) for o in CALL_OUTCOME_ORDER], outcome_urls
    )
    outcome_rows = [
        {
            "key": o,
            "label": labels[o],
            "count": c.outcomes[o],
            "share": 100.0 * c.outcomes[o] / c.completed if c.completed else None,
            "url": outcome_urls[o],
        }
        for o in CALL_OUTCOME_ORDER
    ]
    return render(
        request,
        "dashboard/campaign.html",
        {
            "org": org,
            "campaign": campaign,
            "period": period,
            "periods": list(PERIODS.values()),
            "notice": notice,
            "figures": figures,
            "charts": [outcome_chart],
            "pie": pie,
            "outcome_rows": outcome_rows,
            "current": c,
            "explore_url": _explore_url(org, campaign=campaign.slug, start=start, end=end),
        },
    )
