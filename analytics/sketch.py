"""Mergeable response-time histograms with bounded relative error (DDSketch-style log buckets).

A value x > 0 falls in bucket i = ceil(log_gamma(x)), with gamma = (1 + a) / (1 - a); every value
in bucket i lies in (gamma^(i-1), gamma^i], and the bucket's estimate 2 * gamma^i / (gamma + 1)
is within relative error `a` of each of them. Histograms merge by adding counts, so a percentile
over any range is read from per-minute (Redis) or per-hour (PostgreSQL) histograms, never from
raw rows. Stored as {bucket index (str): count}; values <= MIN_VALUE share bucket 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1.0  # ms; response times below a millisecond are reported as 1 ms


def bucket_of(value: float) -> int:
    if value <= MIN_VALUE:
        return 0
    return math.ceil(math.log(value) / LOG_GAMMA)


def bucket_value(index: int) -> float:
    if index <= 0:
        return MIN_VALUE
    return 2 * GAMMA**index / (GAMMA + 1)


def histogram_of(values: Iterable[float]) -> dict[str, int]:
    hist: dict[str, int] = {}
    for v in values:
        key = str(bucket_of(v))
        hist[key] = hist.get(key, 0) + 1
    return hist


def merge(histograms: Iterable[Mapping[str | bytes | int, int | str | bytes]]) -> dict[int, int]:
    """Sum histograms (keys and counts may be str/bytes, as read back from Redis)."""
    total: dict[int, int] = {}
    for hist in histograms:
        for key, count in hist.items():
            index = int(key)
            total[index] = total.get(index, 0) + int(count)
    return total


def quantiles(hist: Mapping[int, int], qs: Iterable[float]) -> list[float | None]:
    """Estimates of the q-quantiles (0..1) of a merged histogram; None when it is empty.

    Uses the lower-rank convention rank = q * (n - 1), like percentile_disc on sorted values,
    so results match exact percentiles within the sketch's relative accuracy.
    """
    qs = list(qs)
    n = sum(hist.values())
    if n == 0:
        return [None for _ in qs]
    ordered = sorted(hist.items())
    results = []
    for q in qs:
        rank = q * (n - 1)
        seen = 0
        for index, count in ordered:
            seen += count
            if seen > rank:
                results.append(bucket_value(index))
                break
        else:  # pragma: no cover - rank < n always stops the loop
            results.append(bucket_value(ordered[-1][0]))
    return results
