"""The change-point module against reference values from scipy and by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from deployments import changepoint
from deployments.changepoint import Minute


def minute_of(log_ms: np.ndarray, errors: int = 0) -> Minute:
    return Minute(len(log_ms), errors, float(log_ms.sum()), float((log_ms**2).sum()))


def test_the_binomial_log_likelihood_is_scipys_without_the_coefficient():
    errors, requests = 37, 1200
    reference = stats.binom.logpmf(errors, requests, errors / requests) - math.log(
        math.comb(requests, errors)
    )
    assert changepoint.binomial_log_likelihood(errors, requests) == pytest.approx(reference)


def test_the_error_ratio_is_the_binomial_likelihood_ratio():
    before, after = Minute(1000, 10), Minute(1000, 40)
    # Two rates (0.01, 0.04) against one (0.025); the coefficients cancel.
    reference = (
        stats.binom.logpmf(10, 1000, 0.01)
        + stats.binom.logpmf(40, 1000, 0.04)
        - stats.binom.logpmf(10, 1000, 0.025)
        - stats.binom.logpmf(40, 1000, 0.025)
    )
    assert changepoint.error_ratio(before, after) == pytest.approx(reference)


def test_a_lower_error_rate_after_gives_no_ratio():
    assert changepoint.error_ratio(Minute(1000, 40), Minute(1000, 10)) == 0.0


def test_the_latency_ratio_is_the_normal_likelihood_ratio_of_a_mean_shift():
    rng = np.random.default_rng(5)
    before = np.log(40) + rng.normal(0, 0.4, 600)
    after = np.log(80) + rng.normal(0, 0.4, 300)
    everything = np.concatenate([before, after])
    # Maximum-likelihood fits: one mean and variance, or two means and a pooled variance.
    pooled_sd = math.sqrt(
        (((before - before.mean()) ** 2).sum() + ((after - after.mean()) ** 2).sum())
        / len(everything)
    )
    two_levels = (
        stats.norm.logpdf(before, before.mean(), pooled_sd).sum()
        + stats.norm.logpdf(after, after.mean(), pooled_sd).sum()
    )
    one_level = stats.norm.logpdf(everything, everything.mean(), everything.std()).sum()
    ratio = changepoint.latency_ratio(minute_of(before), minute_of(after))
    assert ratio == pytest.approx(two_levels - one_level, rel=1e-9)


def test_faster_requests_give_no_latency_ratio():
    slow, fast = np.full(50, math.log(80.0)), np.full(50, math.log(40.0))
    assert changepoint.latency_ratio(minute_of(slow), minute_of(fast)) == 0.0


def test_it_finds_the_minute_errors_began():
    # 1% errors for six minutes, then 10%: the step is at index 6 by construction.
    series = [Minute(100, 1)] * 6 + [Minute(100, 10)] * 4
    found = changepoint.onset(series, use_latency=False)
    assert found is not None and found.index == 6 and found.metric == "errors"


def test_it_finds_the_minute_latency_doubled():
    rng = np.random.default_rng(11)
    series = [minute_of(np.log(40) + rng.normal(0, 0.3, 120)) for _ in range(20)]
    series += [minute_of(np.log(80) + rng.normal(0, 0.3, 120)) for _ in range(5)]
    found = changepoint.onset(series)
    assert found is not None and found.index == 20 and found.metric == "latency"
    assert found.errors_ratio == 0.0


def test_a_steady_series_has_no_onset():
    assert changepoint.onset([Minute(100, 2)] * 30, use_latency=False) is None


def test_a_recovery_is_not_an_onset():
    assert changepoint.onset([Minute(100, 10)] * 5 + [Minute(100, 1)] * 5) is None


def test_one_extra_error_stays_below_the_penalty():
    # 9 errors in 900 requests, then 2 in 100: a ratio of about 0.34 at the last split, while the
    # modified-BIC penalty for 1,000 requests is 1.5·ln(1000) ≈ 10.4.
    series = [Minute(100, 1)] * 9 + [Minute(100, 2)]
    assert changepoint.default_penalty(1000) == pytest.approx(10.3616, abs=1e-4)
    assert changepoint.onset(series, use_latency=False) is None


def test_minutes_without_requests_go_to_the_first_minute_that_shows_the_rise():
    series = [Minute(100, 0)] * 3 + [Minute(0)] * 2 + [Minute(100, 20)] * 3
    found = changepoint.onset(series, use_latency=False)
    assert found is not None and found.index == 5


def test_an_empty_or_single_minute_series_has_no_onset():
    assert changepoint.onset([]) is None
    assert changepoint.onset([Minute(100, 50)]) is None


def test_an_old_burst_that_ended_is_not_the_onset_when_splits_start_later():
    # 60 requests a minute: none fail for 10 minutes, 30% for 2, none for 48, then 5% for 5.
    series = [Minute(60, 0)] * 10 + [Minute(60, 18)] * 2 + [Minute(60, 0)] * 48
    series += [Minute(60, 3)] * 5
    # By hand, the ratio at the burst (split 10) is about 8.5 and at the regression
    # (split 60) about 10.7; both are below the penalty 1.5·ln(3900) ≈ 12.4.
    before_burst = changepoint.error_ratio(sum(series[:10], Minute(0)), sum(series[10:], Minute(0)))
    at_regression = changepoint.error_ratio(
        sum(series[:60], Minute(0)), sum(series[60:], Minute(0))
    )
    assert before_burst == pytest.approx(8.5, abs=0.1)
    assert at_regression == pytest.approx(10.7, abs=0.1)
    found = changepoint.onset(series, use_latency=False, penalty=5, first_index=45)
    assert found is not None and found.index == 60
