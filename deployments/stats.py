"""The statistics behind deploy verdicts. Pure code: no Django, no database.

Every test is one-sided: a deploy fails for getting worse, never for getting
better. A comparison fails only when it is both statistically significant
(after correcting for the number of comparisons) and larger than a practical
threshold, so a tiny but certain shift on a busy service passes.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

# The power a "pass" promises: a threshold-sized regression would have been
# caught with this probability.
POWER = 0.8
# Fewest expected samples above a quantile for its comparison to mean anything.
MIN_TAIL_SAMPLES = 5


@dataclass(frozen=True)
class Thresholds:
    error_rate_min_pp: float = 0.5
    error_rate_min_ratio: float = 1.5
    latency_min_ratio: float = 1.2
    latency_min_ms: float = 10.0


@dataclass(frozen=True)
class Comparison:
    baseline_value: float
    candidate_value: float
    p_value: float
    interval_low: float
    interval_high: float
    practical: bool
    effect_size: float

    @property
    def direction(self) -> str:
        if self.candidate_value > self.baseline_value:
            return "up"
        return "down" if self.candidate_value < self.baseline_value else "same"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given."""
    count = len(p_values)
    order = sorted(range(count), key=lambda i: p_values[i])
    adjusted = [1.0] * count
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    rate = successes / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def compare_error_rates(
    baseline_errors: int,
    baseline_n: int,
    candidate_errors: int,
    candidate_n: int,
    *,
    thresholds: Thresholds,
    confidence: float,
) -> Comparison:
    """Fisher's exact test that the candidate errs more often than the baseline."""
    baseline_rate = baseline_errors / baseline_n
    candidate_rate = candidate_errors / candidate_n
    table = [
        [candidate_errors, candidate_n - candidate_errors],
        [baseline_errors, baseline_n - baseline_errors],
    ]
    p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
    low, high = wilson_interval(candidate_errors, candidate_n, confidence)
    return Comparison(
        baseline_value=baseline_rate,
        candidate_value=candidate_rate,
        p_value=p_value,
        interval_low=low,
        interval_high=high,
        practical=error_rate_exceeds(baseline_rate, candidate_rate, thresholds),
        effect_size=candidate_rate - baseline_rate,
    )


def error_rate_exceeds(baseline_rate: float, candidate_rate: float, thresholds: Thresholds) -> bool:
    absolute = candidate_rate - baseline_rate >= thresholds.error_rate_min_pp / 100
    relative = candidate_rate >= baseline_rate * thresholds.error_rate_min_ratio
    return absolute and relative


def latency_exceeds(baseline_ms: float, candidate_ms: float, thresholds: Thresholds) -> bool:
    relative = candidate_ms >= baseline_ms * thresholds.latency_min_ratio
    absolute = candidate_ms - baseline_ms >= thresholds.latency_min_ms
    return relative and absolute


def quantile_testable(baseline_n: int, candidate_n: int, quantile: float) -> bool:
    tail = 1 - quantile
    return min(baseline_n, candidate_n) * tail >= MIN_TAIL_SAMPLES


def compare_quantiles(
    baseline_ms: np.ndarray,
    candidate_ms: np.ndarray,
    quantile: float,
    *,
    thresholds: Thresholds,
    confidence: float,
) -> Comparison:
    """Is the candidate's `quantile` of latency above the baseline's?

    A quantile test in the manner of Mood's median test: split the pooled
    sample at its quantile and ask, with Fisher's exact test, whether the
    candidate has more than its share above the split. Distribution-free and
    exact; the interval is the order-statistic one for the candidate quantile.
    """
    split = float(np.quantile(np.concatenate([baseline_ms, candidate_ms]), quantile))
    candidate_above = int(np.count_nonzero(candidate_ms > split))
    baseline_above = int(np.count_nonzero(baseline_ms > split))
    table = [
        [candidate_above, len(candidate_ms) - candidate_above],
        [baseline_above, len(baseline_ms) - baseline_above],
    ]
    p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
    baseline_value = float(np.quantile(baseline_ms, quantile))
    candidate_value = float(np.quantile(candidate_ms, quantile))
    low, high = quantile_interval(np.sort(candidate_ms), quantile, confidence)
    return Comparison(
        baseline_value=baseline_value,
        candidate_value=candidate_value,
        p_value=p_value,
        interval_low=low,
        interval_high=high,
        practical=latency_exceeds(baseline_value, candidate_value, thresholds),
        effect_size=candidate_value / baseline_value if baseline_value > 0 else math.inf,
    )


def quantile_interval(sorted_values: np.ndarray, quantile: float, confidence: float):
    """Distribution-free confidence interval for a quantile, from order statistics."""
    n = len(sorted_values)
    alpha = 1 - confidence
    low_rank = int(stats.binom.ppf(alpha / 2, n, quantile))
    high_rank = int(stats.binom.ppf(1 - alpha / 2, n, quantile)) + 1
    low = float(sorted_values[max(low_rank - 1, 0)])
    high = float(sorted_values[min(high_rank - 1, n - 1)])
    return low, high


def new_error_type_p_value(count: int, baseline_n: int, candidate_n: int) -> float:
    """Chance that `count` errors of a type all fall in the candidate by luck.

    The baseline never saw the type: this is Fisher's exact test with a zero
    baseline cell, the hypergeometric chance of all of them landing on the
    candidate side.
    """
    table = [[count, candidate_n - count], [0, baseline_n]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)


def throughput_drop_p_value(observed: int, expected: float) -> float:
    """Poisson chance of seeing this few requests when `expected` were due."""
    return float(stats.poisson.cdf(observed, expected))


def requests_needed_for_error_rate(
    baseline_errors: int, baseline_n: int, *, thresholds: Thresholds, confidence: float
) -> int:
    """Candidate requests needed to catch a threshold-sized error-rate rise.

    A one-sided two-sample test at the given confidence and POWER. The
    baseline's own noise counts, so a short baseline can make no candidate
    size enough: then the answer is huge (10**9).
    """
    # Zero errors in the baseline is not a zero rate; half an error is a fair guess.
    base_rate = max(baseline_errors, 0.5) / baseline_n
    target = max(
        base_rate + thresholds.error_rate_min_pp / 100,
        base_rate * thresholds.error_rate_min_ratio,
    )
    return _two_sample_n(base_rate, target, baseline_n, confidence)


def requests_needed_for_latency(baseline_n: int, *, confidence: float) -> int:
    """Candidate requests needed to catch a threshold-sized p95 rise.

    A p95 up by the default 20% puts about twice the usual 5% of typical
    (log-normal) latencies above the old p95: the test must tell 5% from 10%.
    """
    return max(
        _two_sample_n(0.05, 0.10, baseline_n, confidence),
        math.ceil(MIN_TAIL_SAMPLES / 0.05),
    )


def _two_sample_n(p0: float, p1: float, baseline_n: int, confidence: float) -> int:
    """Candidate size for a one-sided test of p1 against p0, by the arcsine transform.

    Cohen's h stays accurate for the small proportions of error rates, where
    the plain normal approximation asks for several times too many requests.
    """
    z = stats.norm.ppf(confidence) + stats.norm.ppf(POWER)
    h = 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p0))
    allowed = (h / z) ** 2 - 1 / baseline_n
    if allowed <= 0:
        return 10**9
    return math.ceil(1 / allowed)
