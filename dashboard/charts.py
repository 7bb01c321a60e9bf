"""Plotly figures (plain dicts in plotly.js's schema) built from selector output.

Colours are CSS variables ("var(--accent)"); static/dashboard/live.js resolves them when it draws,
so every chart follows the light or dark theme. Times are the org's wall clock, without offset.
"""

from __future__ import annotations

from datetime import datetime

import redis

from analytics.selectors import (
    PERIODS,
    MinutePoint,
    Period,
    ResponseTimePoint,
    VolumePoint,
    period_get,
    period_series,
)

ACCENT, WARN, GOOD, MUTED = "var(--accent)", "var(--warn)", "var(--good)", "var(--muted)"
TRANSPARENT = "rgba(0,0,0,0)"


def activity_figure(series: list[MinutePoint]) -> dict:
    """Messages per minute (bars) and p95 response time (line, right axis) for the last minutes."""
    x = [p.minute.isoformat() for p in series]
    return {
        "data": [
            {
                "type": "bar",
                "name": "Messages / min",
                "x": x,
                "y": [p.messages for p in series],
                "marker": {"color": ACCENT},
                "hovertemplate": "%{y} messages<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "p95 response (ms)",
                "x": x,
                "y": [round(p.p95_ms) if p.p95_ms is not None else None for p in series],
                "yaxis": "y2",
                "line": {"color": WARN, "width": 2},
                "connectgaps": False,
                "hovertemplate": "p95 %{y} ms<extra></extra>",
            },
        ],
        "layout": {
            "margin": {"l": 44, "r": 52, "t": 10, "b": 36},
            "height": 260,
            "showlegend": True,
            "legend": {"orientation": "h", "y": -0.25},
            "bargap": 0.25,
            "xaxis": {"type": "date", "tickformat": "%H:%M"},
            "yaxis": {"title": {"text": "messages"}, "rangemode": "tozero"},
            "yaxis2": {
                "title": {"text": "ms"},
                "overlaying": "y",
                "side": "right",
                "rangemode": "tozero",
                "showgrid": False,
            },
            "paper_bgcolor": TRANSPARENT,
            "plot_bgcolor": TRANSPARENT,
        },
    }


# How each period labels its buckets: (plotly tick format, hover format, table label strftime).
_TIME_FORMATS = {
    "24h": ("%H:%M", "%a %H:%M", "%a %H:%M"),
    "7d": ("%a %-d", "%a %-d %b %H:%M", "%a %-d %b %H:%M"),
    "30d": ("%-d %b", "%a %-d %b", "%a %-d %b"),
}


def _x(points) -> list[str]:
    return [p.start.strftime("%Y-%m-%dT%H:%M") for p in points]


def round_ms(value: float | None) -> int | None:
    """A duration as whole milliseconds for a chart or table (None stays a gap)."""
    return None if value is None else round(value)


def bucket_label(period: Period, start: datetime) -> str:
    """How a table row names the bucket starting at `start`."""
    return start.strftime(_TIME_FORMATS[period.key][2])


def _time_layout(period: Period, y_title: str) -> dict:
    tick, hover, _ = _TIME_FORMATS[period.key]
    return {
        "margin": {"l": 48, "r": 12, "t": 10, "b": 36},
        "height": 260,
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.22},
        "hovermode": "x unified",
        "xaxis": {"type": "date", "tickformat": tick, "hoverformat": hover},
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "paper_bgcolor": TRANSPARENT,
        "plot_bgcolor": TRANSPARENT,
    }


def response_time_figure(points: list[ResponseTimePoint], period: Period) -> dict:
    """Average, p50 and p95 response time per bucket; an empty bucket is a gap in each line."""
    x = _x(points)

    def line(name, values, color, dash="solid"):
        return {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": x,
            "y": values,
            "connectgaps": False,
            "line": {"color": color, "width": 2, "dash": dash},
            "marker": {"size": 4},
            "hovertemplate": "%{y:,} ms",
        }

    return {
        "data": [
            line("Average", [round_ms(p.avg_ms) for p in points], ACCENT),
            line("p50", [round_ms(p.p50_ms) for p in points], GOOD, "dot"),
            line("p95", [round_ms(p.p95_ms) for p in points], WARN),
        ],
        "layout": _time_layout(period, "ms"),
    }


def message_volume_figure(points: list[VolumePoint], period: Period) -> dict:
    """Inbound and outbound messages per bucket (stacked bars)."""
    x = _x(points)
    return {
        "data": [
            {
                "type": "bar",
                "name": "Inbound",
                "x": x,
                "y": [p.inbound for p in points],
                "marker": {"color": ACCENT},
                "hovertemplate": "%{y:,} in",
            },
            {
                "type": "bar",
                "name": "Outbound",
                "x": x,
                "y": [p.outbound for p in points],
                "marker": {"color": WARN},
                "hovertemplate": "%{y:,} out",
            },
        ],
        "layout": {
            **_time_layout(period, "messages"),
            "barmode": "stack",
            "bargap": 0.2,
            "legend": {"orientation": "h", "y": -0.22, "traceorder": "normal"},
        },
    }


def period_charts(org, period_key: str | None = None, *, bot=None, now=None) -> dict:
    """What the response-time and volume charts show: figures, data tables and the period switch."""
    period = period_get(period_key)
    bots = None if bot is None else [bot]
    live_missing = False
    try:
        response, volume = period_series(org=org, period=period, bots=bots, now=now)
    except redis.RedisError:
        # The rolled-up hours still show; the live ones come back with Redis.
        live_missing = True
        response, volume = period_series(org=org, period=period, bots=bots, now=now, live=False)
    label = _TIME_FORMATS[period.key][2]
    rows = [
        {
            "label": r.start.strftime(label),
            "avg": round_ms(r.avg_ms),
            "p50": round_ms(r.p50_ms),
            "p95": round_ms(r.p95_ms),
            "p99": round_ms(r.p99_ms),
            "inbound": v.inbound,
            "outbound": v.outbound,
        }
        for r, v in zip(response, volume, strict=True)
    ]
    return {
        "period": period,
        "periods": list(PERIODS.values()),
        "period_bot": bot,
        "period_rows": rows,
        "period_live_missing": live_missing,
        "response_figure": response_time_figure(response, period),
        "volume_figure": message_volume_figure(volume, period),
    }


def outcome_pie_figure(slices: list[tuple[str, str, int]]) -> dict:
    """Call outcomes as a donut with the total in the middle, from (key, label, count) slices.

    Slice colours are the outcome bars' (app.css `--o-<key>`), so the bars table is the legend.
    """
    shown = [s for s in slices if s[2]]
    total = sum(n for _, _, n in shown)
    return {
        "data": [
            {
                "type": "pie",
                "hole": 0.58,
                "sort": False,
                "direction": "clockwise",
                "labels": [label for _, label, _ in shown],
                "values": [n for _, _, n in shown],
                "marker": {
                    "colors": [f"var(--o-{key})" for key, _, _ in shown],
                    "line": {"color": "var(--surface)", "width": 1},
                },
                "textinfo": "none",
                "hovertemplate": "%{label}: %{value} (%{percent})<extra></extra>",
            },
        ],
        "layout": {
            "margin": {"l": 2, "r": 2, "t": 2, "b": 2},
            "height": 120,
            "width": 120,
            "showlegend": False,
            "annotations": [
                {"text": f"{total:,}<br>calls", "showarrow": False, "font": {"size": 13}}
            ],
            "paper_bgcolor": TRANSPARENT,
            "plot_bgcolor": TRANSPARENT,
        },
    }


# --- bot and campaign pages (issue 6): every point carries its explorer link (drill-down) ------


def drill_figure(
    *, period: Period, x: list[str], traces: list[dict], y_title: str, urls: list[str], **layout
) -> dict:
    """Lines and bars over the period's buckets; `customdata` holds each bucket's explorer URL,
    which static/dashboard/explore.js opens when a point or bar is clicked."""
    data = []
    for t in traces:
        trace = {
            "name": t["name"],
            "x": x,
            "y": t["y"],
            "customdata": urls,
            "marker": {"color": t.get("color", ACCENT)},
            "hovertemplate": t.get("hover", "%{y:,}") + "<extra>" + t["name"] + "</extra>",
        }
        if t.get("type") == "bar":
            trace["type"] = "bar"
        else:
            trace.update(
                type="scatter",
                mode="lines+markers",
                connectgaps=False,
                line={"color": t.get("color", ACCENT), "width": 2, "dash": t.get("dash", "solid")},
            )
            trace["marker"]["size"] = 5
        if t.get("axis") == "y2":
            trace["yaxis"] = "y2"
        data.append(trace)
    base = _time_layout(period, y_title)
    if any(t.get("axis") == "y2" for t in traces):
        base["yaxis2"] = {
            "title": {"text": layout.pop("y2_title", "")},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
        }
        base["margin"] = {**base["margin"], "r": 52}
    return {"data": data, "layout": {**base, **layout}}


def outcome_pie_drill_figure(slices: list[tuple[str, str, int]], urls: dict[str, str]) -> dict:
    """outcome_pie_figure() whose slices open the explorer filtered to that call outcome."""
    figure = outcome_pie_figure(slices)
    figure["data"][0]["customdata"] = [urls[key] for key, _label, n in slices if n]
    return figure
