"""Forecasts of an hourly series for the next 7 days, with 80% and 95% intervals and a backtest.

The model is statsmodels' ETS (additive error and weekly seasonality of 168 hours, which holds the
daily pattern too), initialised heuristically so a fit takes milliseconds. Its own intervals
ignore the noise in the estimated seasonal profile, so they are widened: by the errors of a
backtest on the last held-out week when there are 21 days or more (split-conformal), otherwise
by the variance of a profile estimated from k weeks (sqrt(1 + 2/k)). Under 14 days (two weekly
cycles) there is no forecast at all: `forecast_hourly` returns None.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

HOURS_PER_WEEK = 168
MIN_HISTORY_HOURS = 14 * 24
BACKTEST_MIN_HOURS = 21 * 24
Z80, Z95 = 1.2816, 1.9600


@dataclass(frozen=True)
class Forecast:
    start: datetime  # first forecast hour (UTC)
    mean: list[float]
    lo80: list[float]
    hi80: list[float]
    lo95: list[float]
    hi95: list[float]
    total: float
    total_lo80: float
    total_hi80: float
    total_lo95: float
    total_hi95: float
    mape: float | None  # percent, on daily totals of the held-out week; None without a backtest
    history_hours: int

    def as_dict(self) -> dict:
        return {
            "start": self.start.isoformat(),
            "mean": self.mean,
            "lo80": self.lo80,
            "hi80": self.hi80,
            "lo95": self.lo95,
            "hi95": self.hi95,
            "total": self.total,
            "total_lo80": self.total_lo80,
            "total_hi80": self.total_hi80,
            "total_lo95": self.total_lo95,
            "total_hi95": self.total_hi95,
            "mape": self.mape,
            "history_hours": self.history_hours,
        }


def _fit(values: np.ndarray, start: datetime):
    # Here, not at the top: pandas and statsmodels take ~1 s to import, and only a forecast needs them.
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    index = pd.date_range(start.replace(tzinfo=None), periods=len(values), freq="h")
    model = ETSModel(
        pd.Series(values, index=index),
        error="add",
        trend=None,
        seasonal="add",
        seasonal_periods=HOURS_PER_WEEK,
        initialization_method="heuristic",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on flat or sparse series
        return model.fit(disp=False)


def _predict(fit, n: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each forecast hour."""
    frame = fit.get_prediction(start=n, end=n + horizon - 1).summary_frame(alpha=0.05)
    mean = frame["mean"].to_numpy()
    sd = (frame["pi_upper"].to_numpy() - frame["pi_lower"].to_numpy()) / (2 * Z95)
    return mean, np.maximum(sd, 1e-9)


def _daily_mape(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    days_actual = actual.reshape(-1, 24).sum(axis=1)
    days_pred = np.maximum(predicted, 0).reshape(-1, 24).sum(axis=1)
    keep = days_actual > 0
    if not keep.any():
        return None
    return float(100 * np.mean(np.abs(days_pred[keep] - days_actual[keep]) / days_actual[keep]))


def forecast_hourly(
    values: list[float] | np.ndarray, start: datetime, horizon: int = HOURS_PER_WEEK
) -> Forecast | None:
    """The next `horizon` hours after an hourly series beginning at `start` (None: too short)."""
    y = np.asarray(values, dtype=float)
    n = len(y)
    if n < MIN_HISTORY_HOURS:
        return None
    if not np.any(y):
        zeros = [0.0] * horizon
        return Forecast(
            start + timedelta(hours=n),
            zeros,
            zeros,
            zeros,
            zeros,
            zeros,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            None,
            n,
        )
    mape = None
    scale80 = scale95 = float(np.sqrt(1 + 2 * HOURS_PER_WEEK / n))
    if n >= BACKTEST_MIN_HOURS:
        held_out = y[-HOURS_PER_WEEK:]
        back = _fit(y[:-HOURS_PER_WEEK], start)
        b_mean, b_sd = _predict(back, n - HOURS_PER_WEEK, HOURS_PER_WEEK)
        mape = _daily_mape(held_out, b_mean)
        z = np.abs(held_out - b_mean) / b_sd
        scale80 = max(1.0, float(np.quantile(z, 0.8)) / Z80)
        scale95 = max(1.0, float(np.quantile(z, 0.95)) / Z95)
    fit = _fit(y, start)
    mean, sd = _predict(fit, n, horizon)
    sims = np.asarray(
        fit.simulate(horizon, repetitions=500, anchor="end", rng=np.random.default_rng(7))
    )
    totals = sims.sum(axis=0)
    centre = float(np.maximum(mean, 0).sum())
    # the simulated paths share the fitted seasonal profile; its own error adds, hour by hour
    profile_var = float(np.sum(sd**2))

    def bound(z: float, scale: float) -> float:
        sd_total = np.sqrt(float(np.var(totals)) + profile_var * (scale**2 - 1))
        return max(0.0, centre + z * float(sd_total))

    def band(z: float, scale: float, sign: int) -> list[float]:
        return [round(max(0.0, m + sign * z * scale * s), 3) for m, s in zip(mean, sd, strict=True)]

    return Forecast(
        start=start + timedelta(hours=n),
        mean=[round(max(0.0, m), 3) for m in mean],
        lo80=band(Z80, scale80, -1),
        hi80=band(Z80, scale80, 1),
        lo95=band(Z95, scale95, -1),
        hi95=band(Z95, scale95, 1),
        total=round(centre, 2),
        total_lo80=round(bound(-Z80, scale80), 2),
        total_hi80=round(bound(Z80, scale80), 2),
        total_lo95=round(bound(-Z95, scale95), 2),
        total_hi95=round(bound(Z95, scale95), 2),
        mape=round(mape, 1) if mape is not None else None,
        history_hours=n,
    )
