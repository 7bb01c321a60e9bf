"""Random shapes of synthetic traffic, shared by the demo seed, the simulator and the benchmark
database (no Django imports, so benchmark worker processes can use it as is)."""

from __future__ import annotations

import math
import random


def diurnal(local_hour: float) -> float:
    """Relative traffic at a local hour: a quiet night and a peak at 14:00."""
    return 0.08 + 0.92 * math.exp(-(((local_hour - 14.0) / 4.5) ** 2))


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:  # normal approximation, plenty for synthetic data
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def pick_weighted(rng: random.Random, weighted) -> str:
    r, acc = rng.random(), 0.0
    for value, weight in weighted:
        acc += weight
        if r < acc:
            return value
    return weighted[-1][0]
