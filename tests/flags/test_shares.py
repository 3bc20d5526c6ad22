"""flags/shares.py: shares that move beyond noise, against a G-test worked out by hand."""

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from scipy.stats import chi2

from flags.shares import change_minute, g_test_p_value, share_shift

DEFAULTS = dict(alpha=0.001, min_shift=0.05, min_count=30)


def g_test_by_hand(before: dict, after: dict) -> float:
    """G = 2 Σ O ln(O/E) over the 2 x k table, with (k - 1) degrees of freedom."""
    cohorts = sorted(set(before) | set(after))
    rows = [[before.get(c, 0) for c in cohorts], [after.get(c, 0) for c in cohorts]]
    total = sum(map(sum, rows))
    g = 0.0
    for row in rows:
        for j, observed in enumerate(row):
            expected = sum(row) * (rows[0][j] + rows[1][j]) / total
            if observed:
                g += observed * math.log(observed / expected)
    return float(chi2.sf(2 * g, len(cohorts) - 1))


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"on": 100, "off": 900}, {"on": 500, "off": 500}),
        ({"on": 100, "off": 900}, {"on": 110, "off": 890}),
        ({"a": 30, "b": 30, "c": 40}, {"a": 10, "b": 50, "c": 0}),
    ],
)
def test_the_p_value_is_the_g_test(before, after):
    assert g_test_p_value(before, after) == pytest.approx(g_test_by_hand(before, after), rel=1e-9)


def test_a_widened_rollout_moved():
    # 10% to 50%, an hour of traffic at 10 req/s on each side.
    shift = share_shift({"on": 3_600, "off": 32_400}, {"on": 6_000, "off": 6_000}, **DEFAULTS)
    assert shift.moved and shift.kind == "shares"
    assert shift.largest_shift == pytest.approx(0.4)
    assert shift.before == {"off": 0.9, "on": 0.1}


def test_a_new_variant_moved():
    shift = share_shift({"off": 1_000}, {"off": 800, "v2": 200}, **DEFAULTS)
    assert shift.moved


def test_sampling_noise_of_a_steady_split_does_not_move():
    rng = random.Random(7)
    moved = 0
    for _ in range(200):
        before = sum(rng.random() < 0.1 for _ in range(3_000))
        after = sum(rng.random() < 0.1 for _ in range(1_000))
        shift = share_shift({"on": before, "off": 3_000 - before},
                            {"on": after, "off": 1_000 - after}, **DEFAULTS)  # fmt: skip
        moved += shift.moved
    assert moved == 0


def test_a_significant_but_tiny_shift_is_not_a_change():
    shift = share_shift({"on": 100_000, "off": 900_000}, {"on": 103_000, "off": 897_000},
                        **DEFAULTS)  # fmt: skip
    assert shift.p_value < 1e-9
    assert not shift.moved


def test_starting_and_stopping_are_changes():
    assert share_shift({}, {"on": 40}, **DEFAULTS).kind == "started"
    assert share_shift({"on": 40}, {}, **DEFAULTS).kind == "stopped"
    assert not share_shift({}, {"on": 3}, **DEFAULTS).moved


def test_too_few_evaluations_are_not_judged():
    assert not share_shift({"on": 1, "off": 9}, {"on": 9, "off": 1}, **DEFAULTS).moved


def test_the_change_minute_is_where_the_shares_split():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    by_minute = {}
    for minute in range(20):
        on = 10 if minute < 13 else 50
        by_minute[t0 + timedelta(minutes=minute)] = {"on": on, "off": 100 - on}
    assert change_minute(by_minute) == t0 + timedelta(minutes=13)
