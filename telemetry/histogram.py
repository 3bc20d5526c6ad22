"""Fixed log-spaced latency buckets for the per-minute rollups.

Pure code with no Django imports. Bucket i holds durations d (in microseconds)
with LOWER_BOUNDS_US[i] <= d < LOWER_BOUNDS_US[i + 1]; bucket 0 holds
everything under 100 µs and the last bucket everything from 100 s up. Between
those, ten buckets per decade keep a percentile read from the histogram within
about 26% of the true value (13% either side of the bucket's midpoint), which
is enough for p50/p95/p99 charts. Exact SLI thresholds never use these buckets.
"""

import bisect
import math

BUCKETS_PER_DECADE = 10
SMALLEST_BOUND_US = 100
LARGEST_BOUND_US = 100_000_000
# Integer bounds, so SQL (width_bucket) and Python (bisect) agree exactly.
LOWER_BOUNDS_US: tuple[int, ...] = tuple(
    round(SMALLEST_BOUND_US * 10 ** (step / BUCKETS_PER_DECADE))
    for step in range(
        round(BUCKETS_PER_DECADE * math.log10(LARGEST_BOUND_US / SMALLEST_BOUND_US)) + 1
    )
)
BUCKET_COUNT = len(LOWER_BOUNDS_US) + 1


def bucket_index(duration_us: int) -> int:
    """The bucket of one duration; PostgreSQL's width_bucket() gives the same."""
    return bisect.bisect_right(LOWER_BOUNDS_US, duration_us)


def bucket_range_us(index: int) -> tuple[int, int | None]:
    """The [lower, upper) range of a bucket; the last one has no upper bound."""
    lower = 0 if index == 0 else LOWER_BOUNDS_US[index - 1]
    upper = LOWER_BOUNDS_US[index] if index < len(LOWER_BOUNDS_US) else None
    return lower, upper


def empty() -> list[int]:
    return [0] * BUCKET_COUNT


def merge(histograms) -> list[int]:
    """Add histograms bucket by bucket."""
    total = empty()
    for histogram in histograms:
        for index, count in enumerate(histogram):
            total[index] += count
    return total


def percentile_us(histogram: list[int], quantile: float) -> float | None:
    """Estimate a quantile (0..1) in microseconds, or None for an empty histogram.

    Interpolates geometrically inside the bucket that holds the rank, which
    suits log-spaced buckets; the open-ended first and last buckets report
    their finite bound.
    """
    count = sum(histogram)
    if count == 0:
        return None
    rank = quantile * count
    seen = 0
    for index, bucket_count in enumerate(histogram):
        if bucket_count and seen + bucket_count >= rank:
            return _interpolate(index, (rank - seen) / bucket_count)
        seen += bucket_count
    return float(LOWER_BOUNDS_US[-1])


def _interpolate(index: int, fraction: float) -> float:
    lower, upper = bucket_range_us(index)
    if index == 0:
        return float(LOWER_BOUNDS_US[0])
    if upper is None:
        return float(lower)
    return lower * (upper / lower) ** fraction
