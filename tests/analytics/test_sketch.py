"""The response-time sketch against exact percentiles."""

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import sketch

QS = (0.5, 0.9, 0.95, 0.99)


def exact(values, q):
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.floats(min_value=1, max_value=3_600_000, allow_nan=False), min_size=1, max_size=400
    ),
    st.integers(min_value=1, max_value=5),
)
def test_it_stays_within_2_percent_of_exact_percentiles_after_merging(values, parts):
    # split into `parts` histograms (like per-minute keys) and merge them back
    chunks = [values[i::parts] for i in range(parts)]
    merged = sketch.merge(sketch.histogram_of(chunk) for chunk in chunks)
    for q, estimate in zip(QS, sketch.quantiles(merged, QS), strict=True):
        truth = exact(values, q)
        assert abs(estimate - truth) <= 0.02 * truth, (q, estimate, truth)


def test_it_matches_percentile_cont_on_realistic_latencies():
    rng = random.Random(7)
    values = [
        rng.lognormvariate(math.log(850), 0.55) * (rng.uniform(3, 9) if rng.random() < 0.03 else 1)
        for _ in range(50_000)
    ]
    hist = sketch.histogram_of(values)
    for q, estimate in zip(QS, sketch.quantiles(sketch.merge([hist]), QS), strict=True):
        ordered = sorted(values)
        pos = q * (len(ordered) - 1)
        lo, hi = ordered[math.floor(pos)], ordered[math.ceil(pos)]
        cont = lo + (hi - lo) * (pos - math.floor(pos))  # PostgreSQL's percentile_cont
        assert abs(estimate - cont) <= 0.02 * cont
    assert len(hist) < 1000  # a compact histogram, not the raw values


def test_it_is_empty_safe_and_reads_redis_shapes():
    assert sketch.quantiles({}, (0.5,)) == [None]
    merged = sketch.merge([{b"100": b"2"}, {"100": "1", 0: 4}])
    assert merged == {100: 3, 0: 4}
    assert sketch.quantiles({0: 1}, (0.5,)) == [1.0]  # sub-millisecond values read as 1 ms
