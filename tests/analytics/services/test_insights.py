"""Forecasts, anomalies and customers at risk on synthetic series where the truth is known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.utils import timezone

from analytics.forecast import forecast_hourly
from analytics.models import BotHourlyRollup, InsightReport
from analytics.services.insights import (
    HourlySeries,
    anomalies_detect,
    customers_at_risk,
    insights_refresh,
)
from tests import factories as f

MONDAY = datetime(2026, 10, 5, tzinfo=UTC)


def seasonal(hours: int, seed: int = 0, noise: float = 4.0) -> np.ndarray:
    """Messages per hour: a daily cycle, weekends at 40%, Poisson-like noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    daily = 40 + 30 * np.sin(2 * np.pi * (t % 24 - 6) / 24)
    weekend = np.where((t // 24) % 7 >= 5, 0.4, 1.0)
    return np.maximum(0, daily * weekend + rng.normal(0, noise, hours)).round()


@pytest.mark.parametrize("days", [14, 28])
def test_it_forecasts_a_known_seasonal_series_within_its_intervals(days):
    covered80, covered95, totals = [], [], []
    for seed in range(5):
        y = seasonal(days * 24 + 168, seed=seed)
        history, future = y[: days * 24], y[days * 24 :]
        forecast = forecast_hourly(history, MONDAY)
        covered80.append(np.mean((future >= forecast.lo80) & (future <= forecast.hi80)))
        covered95.append(np.mean((future >= forecast.lo95) & (future <= forecast.hi95)))
        totals.append(forecast.total_lo95 <= future.sum() <= forecast.total_hi95)
        assert forecast.start == MONDAY + timedelta(days=days)
        assert (forecast.mape is not None) == (days >= 21)
    assert 0.7 <= np.mean(covered80) <= 0.95
    assert 0.88 <= np.mean(covered95) <= 1.0
    assert all(totals)


def test_it_has_no_forecast_under_14_days():
    assert forecast_hourly(seasonal(13 * 24), MONDAY) is None


def series_of(values: np.ndarray) -> HourlySeries:
    n = len(values)
    zeros = np.zeros(n)
    data = {
        k: zeros.copy()
        for k in (
            "conversations",
            "bookings",
            "revenue",
            "replies",
            "failures",
            "fallbacks",
            "cost",
        )
    }
    data["messages"] = values.astype(float)
    return HourlySeries(MONDAY, MONDAY, data, [{} for _ in range(n)])


def test_a_spike_is_an_anomaly_and_a_normal_weekend_dip_is_not():
    # 4 weeks ending on a Sunday: the last 24 hours are a (quiet) weekend day
    values = seasonal(28 * 24, seed=3)
    assert not anomalies_detect(series_of(values))
    spiked = values.copy()
    spiked[-5] = spiked[-5] * 4 + 60
    found = anomalies_detect(series_of(spiked))
    assert [(a["metric"], a["direction"]) for a in found] == [("volume", "high")]
    anomaly = found[0]
    assert anomaly["hour"] == (MONDAY + timedelta(hours=28 * 24 - 5)).isoformat()
    assert anomaly["low"] <= anomaly["expected"] <= anomaly["high"] < anomaly["value"]
    assert anomaly["recommendation"]


def test_a_weekday_treated_like_a_weekend_is_an_anomaly():
    values = seasonal(26 * 24, seed=4)  # ends on a Friday
    dropped = values.copy()
    dropped[-24:] = (dropped[-24:] * 0.1).round()  # an outage-like drop on a weekday
    found = anomalies_detect(series_of(dropped))
    assert found and {a["direction"] for a in found} == {"low"}


@pytest.mark.django_db
def test_it_computes_and_stores_insights_from_rollups(org, bot):
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=21)
    values = seasonal(21 * 24, seed=5)
    BotHourlyRollup.objects.bulk_create(
        BotHourlyRollup(
            organization=org,
            bot=bot,
            hour=start + timedelta(hours=i),
            messages_in=int(v),
            messages_out=int(v),
            conversations_started=int(v // 4),
        )
        for i, v in enumerate(values)
    )
    young = f.BotFactory(organization=org, slug="young")
    f.BotHourlyRollupFactory(bot=young, hour=now - timedelta(days=3), messages_in=5)
    assert insights_refresh(org_id=org.pk, now=now) == 3
    report = InsightReport.objects.for_org(org).get(scope="org")
    messages = report.payload["forecasts"]["messages"]
    assert messages["forecast"]["mape"] is not None and messages["forecast"]["total"] > 0
    assert len(messages["forecast"]["mean"]) == 168
    young_report = InsightReport.objects.for_org(org).get(scope=f"bot:{young.pk}")
    assert young_report.payload["forecasts"]["messages"]["forecast"] is None  # not enough data


@pytest.mark.django_db
def test_it_finds_customers_at_risk_with_their_reasons(org, bot):
    now = timezone.now()
    for days_ago in (80, 75, 70, 65, 60, 55, 50, 45, 40, 35):  # regular, then silent for 35 days
        f.ConversationFactory(
            bot=bot, customer="+1 555 0101", started_at=now - timedelta(days=days_ago)
        )
    for days_ago in (60, 40, 10, 5, 2):
        f.ConversationFactory(
            bot=bot,
            customer="+1 555 0202",
            started_at=now - timedelta(days=days_ago),
            csat=1 if days_ago < 30 else 5,
            status="escalated",
        )
    for days_ago in (50, 30, 20, 10, 3):
        f.ConversationFactory(
            bot=bot, customer="happy", started_at=now - timedelta(days=days_ago), csat=5
        )
    risky = {c["customer"]: c for c in customers_at_risk(org=org, now=now)}
    assert set(risky) == {"+1 555 0101", "+1 555 0202"}
    assert any("no contact" in r for r in risky["+1 555 0101"]["factors"])
    assert any("dropped" in r for r in risky["+1 555 0101"]["factors"])
    assert any("CSAT" in r for r in risky["+1 555 0202"]["factors"])
    assert any("escalations" in r for r in risky["+1 555 0202"]["factors"])
    assert risky["+1 555 0202"]["level"] == "high"
    other = f.OrganizationFactory(slug="other")
    assert customers_at_risk(org=other, now=now) == []
