"""Plotly figures of the insights page: history, 7-day forecast and its 80%/95% bands.

Same conventions as dashboard/charts.py: plain dicts, colours as CSS variables, times in the
org's wall clock without offset.
"""

from __future__ import annotations

from datetime import datetime, timedelta

ACCENT, WARN, MUTED = "var(--accent)", "var(--warn)", "var(--muted)"
BAND95, BAND80 = "rgba(99,132,255,0.16)", "rgba(99,132,255,0.30)"
TRANSPARENT = "rgba(0,0,0,0)"


def _hours(start: str, n: int, tz) -> list[str]:
    first = datetime.fromisoformat(start).astimezone(tz)
    return [(first + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M") for i in range(n)]


def forecast_figure(entry: dict, tz, label: str) -> dict:
    """The last 14 days (hourly) followed by the forecast's mean line inside its two bands."""
    history = entry["history"]
    hx = _hours(entry["history_start"], len(history), tz)
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": f"{label} (actual)",
            "x": hx,
            "y": history,
            "line": {"color": MUTED, "width": 1.2},
            "hovertemplate": "%{y:,.2f}<extra>actual</extra>",
        }
    ]
    forecast = entry.get("forecast")
    if forecast:
        fx = _hours(forecast["start"], len(forecast["mean"]), tz)
        data += [
            {
                "type": "scatter",
                "mode": "lines",
                "x": fx,
                "y": forecast["hi95"],
                "line": {"width": 0},
                "hoverinfo": "skip",
                "showlegend": False,
                "name": "95% upper",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "x": fx,
                "y": forecast["lo95"],
                "line": {"width": 0},
                "fill": "tonexty",
                "fillcolor": BAND95,
                "name": "95% interval",
                "hoverinfo": "skip",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "x": fx,
                "y": forecast["hi80"],
                "line": {"width": 0},
                "hoverinfo": "skip",
                "showlegend": False,
                "name": "80% upper",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "x": fx,
                "y": forecast["lo80"],
                "line": {"width": 0},
                "fill": "tonexty",
                "fillcolor": BAND80,
                "name": "80% interval",
                "hoverinfo": "skip",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "Forecast",
                "x": fx,
                "y": forecast["mean"],
                "line": {"color": ACCENT, "width": 2, "dash": "dot"},
                "hovertemplate": "%{y:,.2f}<extra>forecast</extra>",
            },
        ]
    return {
        "data": data,
        "layout": {
            "margin": {"l": 48, "r": 12, "t": 10, "b": 36},
            "height": 260,
            "showlegend": True,
            "legend": {"orientation": "h", "y": -0.25},
            "xaxis": {"type": "date", "tickformat": "%a %-d %b"},
            "yaxis": {"rangemode": "tozero"},
            "paper_bgcolor": TRANSPARENT,
            "plot_bgcolor": TRANSPARENT,
        },
    }


def daily_rows(entry: dict, tz) -> list[dict]:
    """The forecast summed per day (org time), for the table beside the chart."""
    forecast = entry.get("forecast")
    if not forecast:
        return []
    start = datetime.fromisoformat(forecast["start"]).astimezone(tz)
    days: dict[str, dict] = {}
    for i, mean in enumerate(forecast["mean"]):
        day = (start + timedelta(hours=i)).strftime("%a %-d %b")
        row = days.setdefault(day, {"day": day, "mean": 0.0, "lo95": 0.0, "hi95": 0.0})
        row["mean"] += mean
        row["lo95"] += forecast["lo95"][i]
        row["hi95"] += forecast["hi95"][i]
    return list(days.values())
