"""When a regression began: the change-point of a route's per-minute series.

Pure code: no Django, no settings. A regressed route's minutes split into a
before and an after that differ in error rate, in typical latency, or both.
The onset is the split that best explains the series as "one level, then
another" rather than "one level throughout": the at-most-one-change model,
scored by its log-likelihood ratio (Hinkley 1970; the AMOC method of R's
`changepoint` package). Errors are binomial per request; latency is normal in
log milliseconds, so a ×2 slowdown is one shift whatever the scale.

Invariants:
- a split k puts minutes[:k] before and minutes[k:] after, each side holding
  at least one minute with requests;
- only rises count: a side that got better adds nothing to the ratio, so a
  route that recovered has no onset at its recovery;
- an onset is returned only when its ratio reaches the penalty; the default
  penalty is the modified BIC (Zhang and Siegmund 2007), 3·ln(n) on the
  −2·log-likelihood scale as `changepoint` uses it, i.e. 1.5·ln(n) here,
  where n is the number of requests.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Keeps a segment with identical latencies from dividing by zero; far below
# the variance of any real ln(ms) sample.
MIN_VARIANCE = 1e-9


@dataclass(frozen=True)
class Minute:
    """One minute of requests: counts, and the sums of ln(duration in ms)."""

    requests: int
    errors: int = 0
    log_ms_sum: float = 0.0
    log_ms_sq_sum: float = 0.0

    def __add__(self, other: "Minute") -> "Minute":
        return Minute(
            self.requests + other.requests,
            self.errors + other.errors,
            self.log_ms_sum + other.log_ms_sum,
            self.log_ms_sq_sum + other.log_ms_sq_sum,
        )


EMPTY = Minute(0)


@dataclass(frozen=True)
class Onset:
    index: int  # the first minute after the change
    log_likelihood_ratio: float
    errors_ratio: float  # the part of the ratio the error rate gives
    latency_ratio: float  # the part the latency gives

    @property
    def metric(self) -> str:
        """What changed most: 'errors' or 'latency'."""
        return "errors" if self.errors_ratio >= self.latency_ratio else "latency"


def binomial_log_likelihood(errors: int, requests: int) -> float:
    """The maximised log-likelihood of `errors` in `requests`, binomial coefficient left out."""
    if requests == 0 or errors in (0, requests):
        return 0.0
    rate = errors / requests
    return errors * math.log(rate) + (requests - errors) * math.log1p(-rate)


def error_ratio(before: Minute, after: Minute) -> float:
    """Log-likelihood ratio of two error rates against one; 0 unless the rate rose."""
    if not before.requests or not after.requests:
        return 0.0
    if after.errors / after.requests <= before.errors / before.requests:
        return 0.0
    both = before + after
    return (
        binomial_log_likelihood(before.errors, before.requests)
        + binomial_log_likelihood(after.errors, after.requests)
        - binomial_log_likelihood(both.errors, both.requests)
    )


def squared_deviations(side: Minute) -> float:
    """The sum of squared deviations of ln(ms) from the side's own mean."""
    if not side.requests:
        return 0.0
    return max(0.0, side.log_ms_sq_sum - side.log_ms_sum**2 / side.requests)


def latency_ratio(before: Minute, after: Minute) -> float:
    """Log-likelihood ratio of a shift in mean ln(ms), common variance; 0 unless slower."""
    if not before.requests or not after.requests:
        return 0.0
    if after.log_ms_sum / after.requests <= before.log_ms_sum / before.requests:
        return 0.0
    both = before + after
    n = both.requests
    one_level = max(squared_deviations(both) / n, MIN_VARIANCE)
    two_levels = max((squared_deviations(before) + squared_deviations(after)) / n, MIN_VARIANCE)
    return n / 2 * math.log(one_level / two_levels)


def default_penalty(requests: int) -> float:
    """The modified-BIC penalty on the log-likelihood scale: 1.5·ln(n)."""
    return 1.5 * math.log(max(requests, 2))


def onset(
    minutes: Sequence[Minute],
    *,
    penalty: float | None = None,
    use_latency: bool = True,
    first_index: int = 1,
) -> Onset | None:
    """The minute a rise began, or None when no split reaches the penalty.

    Splits before `first_index` are not considered, though their minutes
    still count as "before": an old burst that ended cannot be taken for the
    onset of what is wrong now. `use_latency=False` for series without latency
    sums. Ties go to the latest split: minutes without requests carry no
    evidence, and a rise is known only from the first minute that shows it.
    """
    total = sum(minutes, EMPTY)
    penalty = default_penalty(total.requests) if penalty is None else penalty
    best: Onset | None = None
    before = sum(minutes[: max(first_index, 1) - 1], EMPTY)
    for index in range(max(first_index, 1), len(minutes)):
        before = before + minutes[index - 1]
        after = _minus(total, before)
        errors = error_ratio(before, after)
        latency = latency_ratio(before, after) if use_latency else 0.0
        if best is None or errors + latency >= best.log_likelihood_ratio:
            best = Onset(index, errors + latency, errors, latency)
    if best is None or best.log_likelihood_ratio < penalty:
        return None
    return best


def _minus(total: Minute, part: Minute) -> Minute:
    return Minute(
        total.requests - part.requests,
        total.errors - part.errors,
        total.log_ms_sum - part.log_ms_sum,
        total.log_ms_sq_sum - part.log_ms_sq_sum,
    )
