"""A campaign's page: call outcomes against the previous period, with drill-down charts.

Wrapped in org_view (404 for anyone outside the org); the campaign is looked up in the org only,
so another org's slug is a 404 like one that does not exist.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from analytics.models import CallOutcome, Campaign
from analytics.selectors import (
    CALL_OUTCOME_ORDER,
    PERIOD_LENGTHS,
    PERIODS,
    campaign_outcome_series,
    campaign_period_summary,
)
from dashboard import charts
from dashboard.presenters import chart_card, explore_url, iso_utc, period_figure, period_from_query
from dashboard.views import org_view


@org_view(perm="org.view")
@require_GET
def campaign_detail(request, org, campaign_slug):
    campaign = get_object_or_404(
        Campaign.objects.for_org(org).select_related("bot"), slug=campaign_slug
    )
    period, notice = period_from_query(request.GET)
    now = timezone.now()
    length = PERIOD_LENGTHS[period.key]
    c = campaign_period_summary(org=org, campaign=campaign, start=now - length, end=now)
    p = campaign_period_summary(
        org=org, campaign=campaign, start=now - 2 * length, end=now - length
    )
    labels = dict(CallOutcome.choices)
    figures = [
        period_figure("attempts", "Call attempts", c.attempts, p.attempts, "int", None),
        period_figure("answer-rate", "Answer rate", c.answer_rate, p.answer_rate, "pct"),
        period_figure(
            "conversion-rate", "Conversion rate", c.conversion_rate, p.conversion_rate, "pct"
        ),
        period_figure("handoffs", "Handoffs", c.handoffs, p.handoffs, "int", False),
        period_figure("csat", "CSAT", c.csat_avg, p.csat_avg, "csat"),
        period_figure(
            "duration",
            "Avg duration",
            c.avg_duration_seconds,
            p.avg_duration_seconds,
            "sec",
            None,
        ),
        *(
            period_figure(
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
        explore_url(org, campaign=campaign.slug, start=iso_utc(s.start), end=iso_utc(s.end))
        for s in series
    ]
    x = [s.start.strftime("%Y-%m-%dT%H:%M") for s in series]
    outcome_chart = chart_card(
        "outcomes",
        "Call attempts and outcomes",
        period,
        x,
        urls,
        "calls",
        [
            (labels[o], [s.outcomes[o] for s in series], f"var(--o-{o})", "bar")
            for o in CALL_OUTCOME_ORDER
        ],
        barmode="stack",
    )
    start, end = iso_utc(now - length), iso_utc(now)
    outcome_urls = {
        o: explore_url(org, campaign=campaign.slug, call_outcome=o, start=start, end=end)
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
            "explore_url": explore_url(org, campaign=campaign.slug, start=start, end=end),
        },
    )
