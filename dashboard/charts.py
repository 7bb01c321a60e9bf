"""Plotly figures (plain dicts in plotly.js's schema) built from selector output."""

from __future__ import annotations

from analytics.selectors import MinutePoint

ACCENT, MUTED = "#3451d1", "#9a6700"


def activity_figure(series: list[MinutePoint]) -> dict:
    """Messages per minute (bars) and p95 response time (line, right axis) for the last minutes."""
    x = [p.minute.isoformat() for p in series]
    return {
        "data": [
            {"type": "bar", "name": "Messages / min", "x": x, "y": [p.messages for p in series],
             "marker": {"color": ACCENT}, "hovertemplate": "%{y} messages<extra></extra>"},
            {"type": "scatter", "mode": "lines+markers", "name": "p95 response (ms)", "x": x,
             "y": [round(p.p95_ms) if p.p95_ms is not None else None for p in series], "yaxis": "y2",
             "line": {"color": MUTED, "width": 2}, "connectgaps": False,
             "hovertemplate": "p95 %{y} ms<extra></extra>"},
        ],
        "layout": {
            "margin": {"l": 44, "r": 52, "t": 10, "b": 36}, "height": 260, "showlegend": True,
            "legend": {"orientation": "h", "y": -0.25}, "bargap": 0.25,
            "xaxis": {"type": "date", "tickformat": "%H:%M"},
            "yaxis": {"title": {"text": "messages"}, "rangemode": "tozero"},
            "yaxis2": {"title": {"text": "ms"}, "overlaying": "y", "side": "right", "rangemode": "tozero",
                       "showgrid": False},
            "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        },
    }  # fmt: skip
