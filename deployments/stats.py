"""The statistics behind deploy verdicts. Pure code: no Django, no database.

Every test is one-sided: a deploy fails for getting worse, never for getting
better. A comparison fails only when it is both statistically significant
(sequentially, after correcting for the number of comparisons) and its
estimate reaches a floor: a fraction (`Thresholds.fail_floor`) of the
practical threshold. A tiny but certain shift on a busy service does not fail.
The floor sits below the threshold because a regression exactly at the
threshold is a real one: an estimate must reach the full threshold only half
the time when the truth sits on it, so a fail that demanded the full
threshold would catch at most about half of them.

A `pass` is a non-inferiority statement, not the absence of a fail: the
one-sided upper confidence bound of the regression lies below its practical
threshold. Its guarantee: a deploy whose regression is at least the threshold
passes with probability at most 1 − confidence, whatever the shape of the
latency distribution (the latency bounds are distribution-free).

Service-wide comparisons are stratified by route (a "stratum" below), so a
change in route mix is not mistaken for a regression: each route is compared
with itself, and the routes are weighted by the candidate's mix.

statsmodels supplies the Wilson interval and the Cochran-Mantel-Haenszel
statistic, scipy the exact tests and the hypergeometric law. Written here:
what no library offers in this form (the exact stratified conditional test,
the one-sided stratified bounds), and Holm's method (see holm()).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal, special, stats
from statsmodels.stats.contingency_tables import StratifiedTable
from statsmodels.stats.proportion import proportion_confint

# Fewest expected samples above a quantile for its comparison to mean anything.
MIN_TAIL_SAMPLES = 5
# "However long it runs" for a sample size that no candidate can reach.
UNREACHABLE = 10**9
# The chance that a candidate exactly as good as its baseline passes once it
# has the requests "more requests needed" asks for.
POWER = 0.8


@dataclass(frozen=True)
class Thresholds:
    error_rate_min_pp: float = 0.5
    error_rate_min_ratio: float = 1.5
    latency_min_ratio: float = 1.2
    latency_min_ms: float = 10.0
    # The share of each threshold's excess an estimate must reach for a fail
    # (1: the full threshold). Significance, not this floor, guards clean deploys.
    fail_floor: float = 1.0


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


@dataclass(frozen=True)
class Stratum:
    """One route's counts on both sides."""

    baseline_errors: int
    baseline_n: int
    candidate_errors: int
    candidate_n: int


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Kept here rather than statsmodels' multipletests(method="holm"), which
    gives the same values (tests/deployments/test_stats.py checks) but calls
    gc.collect() on every call: 0.1 s in a worker, once per look per deploy.
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Two-sided Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return max(0.0, float(low)), min(1.0, float(high))


def one_sided_alpha(confidence: float) -> float:
    """The two-sided alpha whose upper end is a one-sided bound at `confidence`."""
    return 2 * (1 - confidence)


# Error rates.


def error_rate_margin(baseline_rate: float, thresholds: Thresholds) -> float:
    """The smallest rise of the error rate that counts as a regression.

    "+pp and ×ratio" both: a rise d is practical when d ≥ pp and
    baseline + d ≥ ratio × baseline, that is when d ≥ this margin.
    """
    return max(
        thresholds.error_rate_min_pp / 100, (thresholds.error_rate_min_ratio - 1) * baseline_rate
    )


def error_rate_exceeds(
    baseline_rate: float, candidate_rate: float, thresholds: Thresholds, *, floor: float = 1.0
) -> bool:
    """Whether the rise reaches `floor` times the margin (the whole margin by default)."""
    margin = error_rate_margin(baseline_rate, thresholds)
    return candidate_rate - baseline_rate >= floor * margin - 1e-12


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
    return compare_stratified_error_rates(
        [Stratum(baseline_errors, baseline_n, candidate_errors, candidate_n)],
        thresholds=thresholds,
        confidence=confidence,
    )


def compare_stratified_error_rates(
    strata: Sequence[Stratum], *, thresholds: Thresholds, confidence: float
) -> Comparison:
    """Does the candidate err more often than the baseline on the same routes?

    Each route is compared with itself: Fisher's exact test for one route,
    the exact conditional test for several (CMH when events are many; see
    stratified_greater). The baseline value
    is the baseline's per-route rates weighted by the candidate's mix.
    """
    strata = [s for s in strata if s.baseline_n > 0 and s.candidate_n > 0]
    candidate_n = sum(s.candidate_n for s in strata)
    candidate_errors = sum(s.candidate_errors for s in strata)
    baseline_rate = _standardised_baseline_rate(strata)
    candidate_rate = candidate_errors / candidate_n
    low, high = wilson_interval(candidate_errors, candidate_n, confidence)
    return Comparison(
        baseline_value=baseline_rate,
        candidate_value=candidate_rate,
        p_value=_error_rate_p_value(strata),
        interval_low=low,
        interval_high=high,
        practical=error_rate_exceeds(
            baseline_rate, candidate_rate, thresholds, floor=thresholds.fail_floor
        ),
        effect_size=candidate_rate - baseline_rate,
    )


def _standardised_baseline_rate(strata: Sequence[Stratum]) -> float:
    candidate_n = sum(s.candidate_n for s in strata)
    return sum(s.candidate_n / candidate_n * s.baseline_errors / s.baseline_n for s in strata)


def _error_rate_p_value(strata: Sequence[Stratum]) -> float:
    tables = [
        [[s.candidate_errors, s.candidate_n - s.candidate_errors],
         [s.baseline_errors, s.baseline_n - s.baseline_errors]]
        for s in strata
    ]  # fmt: skip
    return stratified_greater(tables)


# Above this many events in the first column the exact convolution costs more
# than a look can spend (tens of milliseconds), and the normal approximation's
# tail is close: its skew shrinks as one over the root of the candidate's count.
EXACT_MAX_EVENTS = 100_000
# Laws longer than this are convolved by FFT (scipy.signal), shorter directly.
DIRECT_CONVOLUTION_MAX = 2_000


def stratified_greater(tables: list) -> float:
    """One-sided p-value that the candidate row has more than its share of the first column.

    One table: Fisher's exact test. Several: the exact conditional test
    (exact_stratified_greater) while the events are few, the CMH test beyond
    EXACT_MAX_EVENTS. The CMH's normal tail is too thin for rare events at
    the tiny alphas of a minute's look: with 6 errors expected among 600
    requests, p < 2e-5 comes ten times as often as it should.
    """
    if len(tables) == 1:
        return float(stats.fisher_exact(tables[0], alternative="greater").pvalue)
    events = sum(t[0][0] + t[1][0] for t in tables)
    if events <= EXACT_MAX_EVENTS:
        return exact_stratified_greater(tables)
    return _cmh_greater(tables)


def exact_stratified_greater(tables: list) -> float:
    """The exact conditional test of several 2×2 tables, one-sided.

    Given every table's margins, the candidate's count in the first column of
    each table is hypergeometric under "no difference" (Fisher's reasoning),
    and the tables are independent, so the total is their convolution. The
    p-value is that law's upper tail at the observed total: exact, with no
    continuity correction, however rare the events.
    """
    law, lowest, observed = np.array([1.0]), 0, 0
    for (a, b), (c, d) in tables:
        total, events, candidate = a + b + c + d, a + c, a + b
        support = np.arange(max(0, candidate - (total - events)), min(events, candidate) + 1)
        law = _convolve(law, hypergeometric_law(support, total, events, candidate))
        lowest += int(support[0])
        observed += a
    return float(min(1.0, law[observed - lowest :].sum()))


def _convolve(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    if min(len(first), len(second)) <= DIRECT_CONVOLUTION_MAX:
        return np.convolve(first, second)
    # FFT rounding leaves ~1e-16 noise, far below any look's alpha: clip it.
    return np.clip(signal.fftconvolve(first, second), 0.0, None)


def hypergeometric_law(support: np.ndarray, total: int, events: int, drawn: int) -> np.ndarray:
    """scipy.stats.hypergeom.pmf over its whole support, from log-gamma functions.

    The same values (tests/deployments/test_stats.py checks), a thousand
    times faster: scipy's per-point pmf takes tens of milliseconds for a
    table of an hour's requests, at every look of every deploy. Normalised
    over the support, which holds all of the law.
    """
    k = support.astype(float)
    log_law = (
        -special.gammaln(k + 1) - special.gammaln(events - k + 1)
        - special.gammaln(drawn - k + 1) - special.gammaln(total - events - drawn + k + 1)
    )  # fmt: skip
    law = np.exp(log_law - log_law.max())
    return law / law.sum()


def _cmh_greater(tables: list) -> float:
    """One-sided CMH p-value: the candidate row has more than its share of the first column."""
    # Strata with one column empty carry no information (and no variance).
    informative = [t for t in tables if 0 < t[0][0] + t[1][0] < sum(map(sum, t))]
    if not informative:
        return 1.0
    excess = 0.0
    for table in informative:
        (a, b), (c, d) = table
        excess += a - (a + b) * (a + c) / (a + b + c + d)
    result = StratifiedTable([np.array(t, dtype=float) for t in informative]).test_null_odds(
        correction=True
    )
    z = math.copysign(math.sqrt(max(float(result.statistic), 0.0)), excess)
    return float(stats.norm.sf(z))


def error_rate_upper_bound(strata: Sequence[Stratum], *, confidence: float) -> float:
    """One-sided upper confidence bound on the mix-adjusted rise of the error rate.

    The rise is Σ w_r (candidate rate_r − baseline rate_r) with w_r the
    candidate's share of route r. The rates are Agresti-Caffo adjusted: each
    side gets one error and one success added, spread over the routes by w_r,
    which keeps the Wald bound honest for rare errors. With one route this is
    statsmodels' `agresti-caffo` interval.
    """
    strata = [s for s in strata if s.baseline_n > 0 and s.candidate_n > 0]
    candidate_n = sum(s.candidate_n for s in strata)
    if not candidate_n:
        return math.inf
    rise, variance = 0.0, 0.0
    for s in strata:
        weight = s.candidate_n / candidate_n
        p_c = (s.candidate_errors + weight) / (s.candidate_n + 2 * weight)
        p_b = (s.baseline_errors + weight) / (s.baseline_n + 2 * weight)
        rise += weight * (p_c - p_b)
        variance += weight**2 * (
            p_c * (1 - p_c) / (s.candidate_n + 2 * weight)
            + p_b * (1 - p_b) / (s.baseline_n + 2 * weight)
        )
    return rise + stats.norm.ppf(confidence) * math.sqrt(variance)


def error_rate_within_threshold(
    strata: Sequence[Stratum], *, thresholds: Thresholds, confidence: float
) -> tuple[bool, float, float]:
    """Non-inferiority of the error rate: (shown, upper bound of the rise, margin).

    The margin depends on the baseline rate, which is itself estimated: it is
    taken at the baseline's lower confidence bound, and each of the two bounds
    gets half of 1 − confidence, so a threshold-sized rise passes with
    probability at most 1 − confidence.
    """
    half = 1 - (1 - confidence) / 2
    strata = [s for s in strata if s.baseline_n > 0 and s.candidate_n > 0]
    if not strata or confidence >= 1:
        return False, math.inf, 0.0
    margin = error_rate_margin(_baseline_rate_lower_bound(strata, half), thresholds)
    bound = error_rate_upper_bound(strata, confidence=half)
    return bound < margin, bound, margin


def _baseline_rate_lower_bound(strata: Sequence[Stratum], confidence: float) -> float:
    """One-sided lower bound of the mix-weighted baseline rate (Wilson for one route)."""
    if len(strata) == 1:
        only = strata[0]
        return wilson_interval(only.baseline_errors, only.baseline_n, 2 * confidence - 1)[0]
    candidate_n = sum(s.candidate_n for s in strata)
    variance = 0.0
    for s in strata:
        rate = (s.baseline_errors + 1) / (s.baseline_n + 2)
        variance += (s.candidate_n / candidate_n) ** 2 * rate * (1 - rate) / (s.baseline_n + 2)
    low = _standardised_baseline_rate(strata) - stats.norm.ppf(confidence) * math.sqrt(variance)
    return max(0.0, low)


def requests_needed_for_error_rate(
    baseline_errors: int, baseline_n: int, *, thresholds: Thresholds, confidence: float
) -> int:
    """Candidate requests for a clean candidate to show non-inferiority of its error rate.

    The textbook non-inferiority size: a candidate erring as the baseline does
    passes with probability POWER once (z_conf + z_power)·sqrt(pq/n_c + pq/n_b)
    is below the margin.
    """
    if baseline_n == 0 or confidence >= 1:
        return UNREACHABLE
    half = 1 - (1 - confidence) / 2
    rate = (baseline_errors + 1) / (baseline_n + 2)
    baseline_low = wilson_interval(baseline_errors, baseline_n, 2 * half - 1)[0]
    margin = error_rate_margin(baseline_low, thresholds)
    z = stats.norm.ppf(half) + stats.norm.ppf(POWER)
    spread = rate * (1 - rate)
    allowed = (margin / z) ** 2 - spread / (baseline_n + 2)
    if allowed <= 0:
        return UNREACHABLE
    return math.ceil(spread / allowed)


# Latency quantiles.


def latency_threshold_ms(baseline_ms: float, thresholds: Thresholds) -> float:
    """The candidate quantile from which a rise counts as a regression."""
    return max(baseline_ms * thresholds.latency_min_ratio, baseline_ms + thresholds.latency_min_ms)


def latency_exceeds(
    baseline_ms: float, candidate_ms: float, thresholds: Thresholds, *, floor: float = 1.0
) -> bool:
    """Whether the rise reaches `floor` of the threshold's excess (all of it by default)."""
    excess = latency_threshold_ms(baseline_ms, thresholds) - baseline_ms
    return candidate_ms >= baseline_ms + floor * excess - 1e-9


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
    """Is the candidate's `quantile` of latency above the baseline's? (One route.)"""
    return compare_stratified_quantiles(
        [(baseline_ms, candidate_ms)], quantile, thresholds=thresholds, confidence=confidence
    )


def compare_stratified_quantiles(
    strata: Sequence[tuple[np.ndarray, np.ndarray]],
    quantile: float,
    *,
    thresholds: Thresholds,
    confidence: float,
) -> Comparison:
    """Is the candidate's `quantile` of latency above the baseline's, route by route?"""
    return LatencyStrata(strata).compare(quantile, thresholds=thresholds, confidence=confidence)


def latency_within_threshold(
    strata: Sequence[tuple[np.ndarray, np.ndarray]],
    quantile: float,
    *,
    thresholds: Thresholds,
    confidence: float,
) -> tuple[bool, float, float]:
    """Non-inferiority of a latency quantile: (shown, candidate's upper bound, threshold)."""
    return LatencyStrata(strata).within_threshold(
        quantile, thresholds=thresholds, confidence=confidence
    )


def sorted_quantile(sorted_values: np.ndarray, quantile: float) -> float:
    """np.quantile's default (linear) on values already sorted, without sorting again."""
    position = (len(sorted_values) - 1) * quantile
    low = int(math.floor(position))
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return float(sorted_values[low] + fraction * (sorted_values[high] - sorted_values[low]))


class LatencyStrata:
    """Both sides' latencies, route by route, sorted once for every quantile asked of them."""

    def __init__(self, strata: Sequence[tuple[np.ndarray, np.ndarray]]):
        pairs = [(np.sort(b), np.sort(c)) for b, c in strata if len(b) and len(c)]
        self.pairs = pairs
        self.candidate = np.sort(np.concatenate([c for _, c in pairs])) if pairs else np.array([])
        self.pooled = (
            np.sort(np.concatenate([self.candidate, *[b for b, _ in pairs]]))
            if pairs
            else np.array([])
        )
        candidate_n = len(self.candidate)
        values = np.concatenate([b for b, _ in pairs]) if pairs else np.array([])
        # Each baseline sample weighted so its route has the candidate's share.
        weights = (
            np.concatenate([np.full(len(b), len(c) / candidate_n / len(b)) for b, c in pairs])
            if pairs
            else np.array([])
        )
        order = np.argsort(values, kind="stable")
        self.baseline_values = values[order]
        self.cumulative_weights = np.cumsum(weights[order])
        self.effective_n = (
            weights.sum() ** 2 / np.square(weights).sum() if len(weights) else 0.0
        )

    def baseline_quantile(self, quantile: float) -> float:
        """The baseline's quantile at the candidate's route mix."""
        if len(self.pairs) == 1:
            return sorted_quantile(self.pairs[0][0], quantile)
        return self._weighted_at(quantile)

    def _weighted_at(self, level: float) -> float:
        index = min(np.searchsorted(self.cumulative_weights, level), len(self.baseline_values) - 1)
        return float(self.baseline_values[index])

    def compare(self, quantile: float, *, thresholds: Thresholds, confidence: float) -> Comparison:
        """A quantile test in the manner of Mood's median test, within each route.

        Split the pooled sample at its quantile and ask whether the candidate
        has more than its share above the split, route by route
        (stratified_greater). Distribution-free. The
        interval is the order-statistic one of the candidate's quantile.
        """
        split = sorted_quantile(self.pooled, quantile)
        tables = []
        for baseline, candidate in self.pairs:
            c_above = len(candidate) - int(np.searchsorted(candidate, split, side="right"))
            b_above = len(baseline) - int(np.searchsorted(baseline, split, side="right"))
            tables.append(
                [[c_above, len(candidate) - c_above], [b_above, len(baseline) - b_above]]
            )
        p_value = stratified_greater(tables)
        baseline_value = self.baseline_quantile(quantile)
        candidate_value = sorted_quantile(self.candidate, quantile)
        low, high = quantile_interval(self.candidate, quantile, confidence)
        return Comparison(
            baseline_value=baseline_value,
            candidate_value=candidate_value,
            p_value=p_value,
            interval_low=low,
            interval_high=high,
            practical=latency_exceeds(
                baseline_value, candidate_value, thresholds, floor=thresholds.fail_floor
            ),
            effect_size=candidate_value / baseline_value if baseline_value > 0 else math.inf,
        )

    def baseline_lower_bound(self, quantile: float, confidence: float) -> float:
        """One-sided lower bound of the baseline's (mix-weighted) quantile.

        One route: the exact order statistic. Several: the weighted quantile at
        the level lowered by z·sqrt(q(1−q)/n_eff), n_eff being Kish's
        effective sample size of the weights.
        """
        if len(self.pairs) == 1:
            values = self.pairs[0][0]
            rank = int(stats.binom.ppf(1 - confidence, len(values), quantile))
            return float(values[rank - 1]) if rank >= 1 else 0.0
        spread = math.sqrt(quantile * (1 - quantile) / self.effective_n)
        level = quantile - stats.norm.ppf(confidence) * spread
        return self._weighted_at(level) if level > 0 else 0.0

    def within_threshold(
        self, quantile: float, *, thresholds: Thresholds, confidence: float
    ) -> tuple[bool, float, float]:
        """Non-inferiority: (shown, candidate's upper bound, threshold).

        Shown when the candidate's upper bound is below the threshold worked
        out from the baseline's lower bound; each bound gets half of
        1 − confidence, so a threshold-sized rise passes with probability at
        most 1 − confidence.
        """
        if not self.pairs or confidence >= 1:
            return False, math.inf, 0.0
        half = 1 - (1 - confidence) / 2
        bound = quantile_upper_bound(self.candidate, quantile, half)
        threshold = latency_threshold_ms(self.baseline_lower_bound(quantile, half), thresholds)
        return bound < threshold, bound, threshold


def quantile_interval(sorted_values: np.ndarray, quantile: float, confidence: float):
    """Distribution-free confidence interval for a quantile, from order statistics."""
    n = len(sorted_values)
    alpha = 1 - confidence
    low_rank = int(stats.binom.ppf(alpha / 2, n, quantile))
    high_rank = int(stats.binom.ppf(1 - alpha / 2, n, quantile)) + 1
    low = float(sorted_values[max(low_rank - 1, 0)])
    high = float(sorted_values[min(high_rank - 1, n - 1)])
    return low, high


def quantile_upper_bound(sorted_values: np.ndarray, quantile: float, confidence: float) -> float:
    """One-sided distribution-free upper bound of a quantile: an order statistic.

    The k-th smallest of n exceeds the quantile unless at least k samples fall
    below it, which has probability P(Binomial(n, q) ≥ k); k is the smallest
    rank for which that is at most 1 − confidence.
    """
    n = len(sorted_values)
    rank = int(stats.binom.ppf(confidence, n, quantile)) + 1
    return float(sorted_values[rank - 1]) if rank <= n else math.inf


def requests_needed_for_latency(
    baseline_ms: np.ndarray, quantile: float, *, thresholds: Thresholds, confidence: float
) -> int:
    """Candidate requests for a clean candidate to show non-inferiority of a quantile.

    A candidate like the baseline has a share p of its requests above the
    threshold (read from the baseline); its upper bound falls below the
    threshold, with probability POWER, once p + (z_conf + z_power)·sqrt(p(1−p)/n) < 1 − q.
    """
    if len(baseline_ms) == 0 or confidence >= 1:
        return UNREACHABLE
    half = 1 - (1 - confidence) / 2
    threshold = latency_threshold_ms(
        LatencyStrata([(baseline_ms, baseline_ms)]).baseline_lower_bound(quantile, half),
        thresholds,
    )
    above = float(np.count_nonzero(baseline_ms >= threshold)) / len(baseline_ms)
    room = (1 - quantile) - above
    if room <= 0:
        return UNREACHABLE
    z = stats.norm.ppf(half) + stats.norm.ppf(POWER)
    return max(
        math.ceil(z * z * above * (1 - above) / room**2),
        math.ceil(MIN_TAIL_SAMPLES / (1 - quantile)),
    )


# Counts.


def new_error_type_p_value(count: int, baseline_n: int, candidate_n: int) -> float:
    """Chance that `count` errors of a type all fall in the candidate by luck.

    The baseline never saw the type: this is Fisher's exact test with a zero
    baseline cell, the hypergeometric chance of all of them landing on the
    candidate side. Both sizes count every route of their side.
    """
    if count > candidate_n:
        raise ValueError(f"{count} errors of a type among {candidate_n} requests")
    table = [[count, candidate_n - count], [0, baseline_n]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)


def throughput_drop_p_value(observed: int, expected: float) -> float:
    """Poisson chance of seeing this few requests when `expected` were due."""
    return float(stats.poisson.cdf(observed, expected))


# Looking again and again.


def spent_alpha(alpha: float, fraction: float, *, rho: float = 0.5, final: float = 0.25) -> float:
    """Lan-DeMets alpha spending: Kim-DeMets power family, with a share kept for the end.

    Before the horizon, (1 − final)·α·t^ρ; at the horizon, all of α. With
    ρ < 1 the early looks get more than a straight line gives them (ρ = 0.5:
    the first of 60 looks gets 13% of the share, Pocock-type spending 2.8%),
    which a verdict that must come within minutes needs. The share kept for
    the horizon is the last look's, whose data is the most: it is what lets a
    regression exactly at the threshold be caught at all within the hour.
    Any non-decreasing function from 0 to α is a valid spending function.
    """
    t = min(max(fraction, 0.0), 1.0)
    if t >= 1:
        return alpha
    return (1 - final) * alpha * t**rho


def look_alpha(
    alpha: float,
    look: float,
    previous_look: float,
    horizon: float,
    *,
    rho: float = 0.5,
    final: float = 0.25,
) -> float:
    """The alpha one look may spend: what the spending function adds since the last look.

    The looks' alphas add up to at most `alpha` over the horizon, so by the
    union bound the chance of any false alarm over all the looks is at most
    `alpha`, however the looks are correlated (and whatever the traffic does
    between them: no assumption about how information grows).
    """
    return spent_alpha(alpha, look / horizon, rho=rho, final=final) - spent_alpha(
        alpha, previous_look / horizon, rho=rho, final=final
    )


def recovery_alphas(
    alpha: float, *, since: int, looks: Sequence[int], step: int
) -> dict[int, list[tuple[int, float]]]:
    """The recovery tests of one regression: for each look, its windows' starts and alphas.

    A recovery claims that the candidate, from a window's start to the look,
    is within every threshold (a non-inferiority test, as a pass is). Windows
    start on a grid of `step` minutes after `since` (never at `since`, where
    the regression began) and last at least `step`; a look tests them only on
    that grid, since looking every minute at overlapping windows adds more
    tests than evidence. Each test gets a share of `alpha` in proportion to
    its length (long windows are the ones with the power to show
    non-inferiority), so the shares add up to `alpha`, and by the union bound
    a regression that persists at or beyond a threshold is declared recovered
    with probability at most `alpha`. Windows come longest first.
    """
    grid = [
        look
        for look in sorted(set(looks))
        if look - since >= 2 * step and (look - since) % step == 0
    ]
    plan = {
        look: [(start, look - start) for start in range(since + step, look - step + 1, step)]
        for look in grid
    }
    total = sum(length for windows in plan.values() for _, length in windows)
    return {
        look: [(start, alpha * length / total) for start, length in windows]
        for look, windows in plan.items()
    }
