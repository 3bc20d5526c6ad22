"""deployments/stats.py against reference values: scipy, statsmodels, and hand arithmetic.

No database: these are the pure statistics.
"""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.contingency_tables import StratifiedTable
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

from deployments import stats

LIMITS = stats.Thresholds()


def test_holm_matches_the_textbook_example_and_statsmodels():
    # Holm (1979) by hand: sorted p 0.01, 0.02, 0.04 times 3, 2, 1, made monotone.
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert stats.holm([]) == []
    p_values = list(np.random.default_rng(5).uniform(0, 0.2, 40))
    assert stats.holm(p_values) == pytest.approx(multipletests(p_values, method="holm")[1])


def test_wilson_interval_matches_the_formula():
    # Wilson (1927) for 5 of 100 at 95%, by hand: centre and half-width.
    z = scipy_stats.norm.ppf(0.975)
    p, n = 0.05, 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert stats.wilson_interval(5, 100, 0.95) == pytest.approx((centre - half, centre + half))
    assert stats.wilson_interval(0, 0, 0.95) == (0.0, 1.0)


def test_the_error_rate_margin_is_the_and_of_both_thresholds():
    # +0.5 pp and x1.5: below a 1% baseline the pp term decides, above it the ratio.
    assert stats.error_rate_margin(0.002, LIMITS) == pytest.approx(0.005)
    assert stats.error_rate_margin(0.04, LIMITS) == pytest.approx(0.02)
    assert stats.error_rate_exceeds(0.04, 0.06, LIMITS)
    assert not stats.error_rate_exceeds(0.04, 0.059, LIMITS)


def test_one_route_error_rates_use_fishers_exact_test():
    result = stats.compare_error_rates(10, 1000, 25, 1000, thresholds=LIMITS, confidence=0.99)
    expected = scipy_stats.fisher_exact([[25, 975], [10, 990]], alternative="greater").pvalue
    assert result.p_value == pytest.approx(expected)
    assert result.practical and result.effect_size == pytest.approx(0.015)


def _brute_force_stratified_p(tables) -> float:
    """P(total ≥ observed) by enumerating every combination of the tables' hypergeometric cells."""
    laws = []
    for (a, b), (c, d) in tables:
        total, events, candidate = a + b + c + d, a + c, a + b
        support = range(max(0, candidate - (total - events)), min(events, candidate) + 1)
        laws.append([(k, scipy_stats.hypergeom.pmf(k, total, events, candidate)) for k in support])
    observed = sum(t[0][0] for t in tables)
    return sum(
        math.prod(p for _, p in combo)
        for combo in itertools.product(*laws)
        if sum(k for k, _ in combo) >= observed
    )


def test_several_routes_use_the_exact_conditional_test():
    strata = [stats.Stratum(5, 500, 12, 400), stats.Stratum(20, 200, 30, 200)]
    result = stats.compare_stratified_error_rates(strata, thresholds=LIMITS, confidence=0.99)
    tables = [[[12, 388], [5, 495]], [[30, 170], [20, 180]]]
    assert result.p_value == pytest.approx(_brute_force_stratified_p(tables), rel=1e-9)
    # Mix-adjusted baseline: the baseline's route rates at the candidate's mix.
    assert result.baseline_value == pytest.approx(400 / 600 * 0.01 + 200 / 600 * 0.10)




def test_one_table_of_the_exact_conditional_test_is_fishers():
    table = [[9, 591], [360, 35640]]
    expected = scipy_stats.fisher_exact(table, alternative="greater").pvalue
    assert stats.exact_stratified_greater([table]) == pytest.approx(expected, rel=1e-9)


def test_long_laws_convolved_by_fft_give_the_direct_convolutions_tail():
    # Two routes with thousands of errors each: above DIRECT_CONVOLUTION_MAX.
    tables = [[[2600, 7400], [2400, 7600]], [[3100, 6900], [3000, 7000]]]
    laws = []
    for (a, b), (c, d) in tables:
        support = np.arange(max(0, a + b - (b + d)), min(a + c, a + b) + 1)
        laws.append(scipy_stats.hypergeom.pmf(support, a + b + c + d, a + c, a + b))
    direct = np.convolve(*laws)
    lowest = sum(max(0, a + b - (b + d)) for (a, b), (c, d) in tables)
    expected = direct[2600 + 3100 - lowest :].sum()
    assert stats.exact_stratified_greater(tables) == pytest.approx(expected, rel=1e-6)


def test_the_hypergeometric_law_is_scipys():
    support = np.arange(0, 236)
    expected = scipy_stats.hypergeom.pmf(support, 21_960, 235, 360)
    law = stats.hypergeometric_law(support, 21_960, 235, 360)
    assert law == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_many_events_use_the_one_sided_cmh_test():
    tables = [np.array([[39_000, 261_000], [36_000, 264_000]]),
              np.array([[21_000, 279_000], [19_500, 280_500]])]  # fmt: skip
    chi2 = StratifiedTable(tables).test_null_odds(correction=True).statistic
    p_value = stats.stratified_greater([t.tolist() for t in tables])
    assert p_value == pytest.approx(scipy_stats.norm.sf(math.sqrt(chi2)))


def test_the_exact_test_holds_its_level_for_rare_errors_where_cmh_does_not():
    # A minute at 10 req/s against an hour before, three routes, 1% errors on
    # both sides: about 6 candidate errors expected. An exact test rejects at
    # most as often as its level; the CMH's normal tail is too thin here.
    rng = np.random.default_rng(11)
    level, runs = 2e-3, 2500
    exact = cmh = 0
    for _ in range(runs):
        tables = []
        for share in (0.6, 0.3, 0.1):
            base_n, cand_n = int(36_000 * share), int(600 * share)
            base_e, cand_e = rng.binomial(base_n, 0.01), rng.binomial(cand_n, 0.01)
            tables.append([[cand_e, cand_n - cand_e], [base_e, base_n - base_e]])
        exact += stats.exact_stratified_greater(tables) < level
        cmh += stats._cmh_greater(tables) < level
    # Binomial(2500, 0.002): 5 expected; 12 or more has probability 0.0054.
    assert exact <= 11
    assert cmh > exact


def test_a_mix_shift_alone_is_not_an_error_rate_rise():
    # Route B errs 10%, route A 1%, on both sides; the candidate sends more to B.
    strata = [stats.Stratum(10, 1000, 2, 200), stats.Stratum(10, 100, 80, 800)]
    result = stats.compare_stratified_error_rates(strata, thresholds=LIMITS, confidence=0.99)
    assert result.effect_size == pytest.approx(0.0)
    assert result.p_value > 0.3 and not result.practical


def test_the_one_route_upper_bound_is_statsmodels_agresti_caffo():
    strata = [stats.Stratum(12, 3000, 9, 1500)]
    bound = stats.error_rate_upper_bound(strata, confidence=0.99)
    _, upper = confint_proportions_2indep(
        9, 1500, 12, 3000, method="agresti-caffo", compare="diff", alpha=0.02
    )
    assert bound == pytest.approx(upper)


def test_non_inferiority_of_error_rates_holds_at_threshold_size_at_most_alpha():
    # Simulated: a candidate whose error rate is exactly at the threshold
    # (1% -> 1.5%) must pass in at most 1 - confidence of cases.
    rng = np.random.default_rng(7)
    passes = 0
    trials = 2000
    for _ in range(trials):
        base = rng.binomial(20000, 0.01)
        cand = rng.binomial(20000, 0.015)
        within, _, _ = stats.error_rate_within_threshold(
            [stats.Stratum(base, 20000, cand, 20000)], thresholds=LIMITS, confidence=0.95
        )
        passes += within
    assert passes / trials <= 0.05


def test_quantile_upper_bound_is_the_binomial_order_statistic():
    values = np.arange(1, 1001, dtype=float)  # the k-th smallest is k
    rank = scipy_stats.binom.ppf(0.99, 1000, 0.95) + 1
    assert stats.quantile_upper_bound(values, 0.95, 0.99) == rank


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_latency_non_inferiority_holds_at_threshold_size_at_most_alpha(sigma):
    # A candidate whose p95 is exactly x1.2 the baseline's, log-normal with
    # sigma 0.5 and the heavy-tailed 1.0: pass in at most 1 - confidence.
    rng = np.random.default_rng(11)
    passes, trials = 0, 400
    for _ in range(trials):
        base = 100 * rng.lognormal(0, sigma, 4000)
        cand = 120 * rng.lognormal(0, sigma, 4000)
        within, _, _ = stats.latency_within_threshold(
            [(base, cand)], 0.95, thresholds=LIMITS, confidence=0.95
        )
        passes += within
    assert passes / trials <= 0.05


def test_a_clean_candidate_shows_latency_non_inferiority_with_enough_requests():
    rng = np.random.default_rng(3)
    base = 100 * rng.lognormal(0, 0.5, 20000)
    cand = 100 * rng.lognormal(0, 0.5, 20000)
    within, bound, threshold = stats.latency_within_threshold(
        [(base, cand)], 0.95, thresholds=LIMITS, confidence=0.99
    )
    assert within and bound < threshold


def test_new_error_type_p_value_is_fishers_with_an_empty_baseline_cell():
    expected = scipy_stats.fisher_exact([[6, 994], [0, 4000]], alternative="greater").pvalue
    assert stats.new_error_type_p_value(6, 4000, 1000) == pytest.approx(expected)
    with pytest.raises(ValueError):
        stats.new_error_type_p_value(10, 100, 5)


def test_alpha_spending_adds_up_to_alpha_over_the_looks():
    looks = list(range(1, 61))
    spent = [stats.look_alpha(0.01, m, m - 1, 60) for m in looks]
    assert sum(spent) == pytest.approx(0.01)
    # Kim-DeMets power family by hand, rho 0.5 on 75% of alpha: the first
    # minute gets 0.0075 sqrt(1/60); the last, what is left, a quarter and more.
    assert spent[0] == pytest.approx(0.0075 * math.sqrt(1 / 60))
    assert spent[-1] == pytest.approx(0.01 - 0.0075 * math.sqrt(59 / 60))
    assert all(a > 0 for a in spent)


def test_recovery_tests_share_alpha_by_window_length_and_add_up_to_it():
    # Since minute 0, a step of 10, looks every minute to 60: looks 20, 30, ...
    # 60 test windows starting at 10, 20, ... and lasting at least 10 minutes.
    # Lengths in steps: 1; 2, 1; 3, 2, 1; 4, 3, 2, 1; 5, 4, 3, 2, 1 — 35 in all.
    plan = stats.recovery_alphas(0.01, since=0, looks=range(1, 61), step=10)
    assert sorted(plan) == [20, 30, 40, 50, 60]
    assert [start for start, _ in plan[60]] == [10, 20, 30, 40, 50]
    assert plan[60][0][1] == pytest.approx(0.01 * 5 / 35)
    assert plan[20] == [(10, pytest.approx(0.01 / 35))]
    assert sum(a for windows in plan.values() for _, a in windows) == pytest.approx(0.01)
    # After a recovery at minute 30 the grid starts there: 50 and 60 are left.
    later = stats.recovery_alphas(0.01, since=30, looks=range(1, 61), step=10)
    assert later == {50: [(40, pytest.approx(0.01 / 4))],
                     60: [(40, pytest.approx(0.01 * 2 / 4)), (50, pytest.approx(0.01 / 4))]}
    assert stats.recovery_alphas(0.01, since=45, looks=range(1, 61), step=10) == {}


def test_the_power_family_is_the_kim_demets_function():
    # alpha t^rho (Kim & DeMets 1987): rho 1 is a straight line, rho 3 near O'Brien-Fleming.
    assert stats.spent_alpha(0.05, 0.25, rho=1, final=0) == pytest.approx(0.0125)
    assert stats.spent_alpha(0.05, 0.5, rho=3, final=0) == pytest.approx(0.05 / 8)
    assert stats.spent_alpha(0.05, 1.0, rho=3, final=0.3) == pytest.approx(0.05)
    assert stats.spent_alpha(0.05, 0.0) == 0.0


def test_a_significant_rise_fails_from_the_floor_not_the_whole_threshold():
    half = stats.Thresholds(fail_floor=0.5)
    # A 1% baseline: margin 0.5 pp, so the floor is 0.25 pp.
    assert stats.error_rate_exceeds(0.01, 0.0126, half, floor=half.fail_floor)
    assert not stats.error_rate_exceeds(0.01, 0.0124, half, floor=half.fail_floor)
    assert not stats.error_rate_exceeds(0.01, 0.0126, half)
    # 100 ms baseline: threshold 120 ms, floor at 110 ms.
    assert stats.latency_exceeds(100, 110.5, half, floor=0.5)
    assert not stats.latency_exceeds(100, 109.5, half, floor=0.5)
    result = stats.compare_error_rates(100, 10_000, 130, 10_000, thresholds=half, confidence=0.99)
    assert result.practical
    assert not stats.compare_error_rates(
        100, 10_000, 130, 10_000, thresholds=LIMITS, confidence=0.99
    ).practical


def test_sorted_quantile_is_numpys_linear_quantile():
    values = np.sort(np.random.default_rng(9).lognormal(0, 1, 1001))
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        assert stats.sorted_quantile(values, q) == pytest.approx(np.quantile(values, q))
