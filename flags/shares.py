"""Whether a flag's variant shares moved beyond noise, and when.

Pure code with no Django. Shares are counted per cohort in a baseline window
and a recent window. They moved when both hold:
- a G-test of independence (window x cohort, scipy's chi2_contingency with
  the log-likelihood statistic) rejects "same shares" at level `alpha`;
- some cohort's share moved by at least `min_shift` (absolute), so that huge
  traffic does not turn a 0.1-point wobble into a change.
A flag that starts being evaluated (nothing before, at least `min_count`
after) or stops (at least `min_count` before, nothing after) moved too.
change_minute() places the move at the split of the minutes that maximises
the same G statistic: the most likely change point.
"""

from dataclasses import dataclass
from datetime import datetime

from scipy.stats import chi2_contingency


@dataclass(frozen=True)
class ShareShift:
    moved: bool
    kind: str  # "shares", "started", "stopped" or "" when not moved
    p_value: float | None
    before: dict[str, float]
    after: dict[str, float]
    largest_shift: float


def shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {cohort: count / total for cohort, count in sorted(counts.items())} if total else {}


def share_shift(
    before: dict[str, int],
    after: dict[str, int],
    *,
    alpha: float,
    min_shift: float,
    min_count: int,
) -> ShareShift:
    before_total, after_total = sum(before.values()), sum(after.values())
    before_shares, after_shares = shares(before), shares(after)
    if before_total == 0 or after_total == 0:
        kind = "started" if after_total >= min_count else ""
        kind = kind or ("stopped" if before_total >= min_count and not after_total else "")
        return ShareShift(bool(kind), kind, None, before_shares, after_shares, 1.0 if kind else 0)
    if before_total < min_count or after_total < min_count:
        return ShareShift(False, "", None, before_shares, after_shares, 0.0)
    p_value = g_test_p_value(before, after)
    cohorts = set(before) | set(after)
    largest = max(abs(after_shares.get(c, 0.0) - before_shares.get(c, 0.0)) for c in cohorts)
    moved = p_value < alpha and largest >= min_shift
    return ShareShift(moved, "shares" if moved else "", p_value, before_shares, after_shares,
                      largest)  # fmt: skip


def _table(before: dict[str, int], after: dict[str, int]) -> list[list[int]]:
    cohorts = sorted(set(before) | set(after))
    return [[before.get(c, 0) for c in cohorts], [after.get(c, 0) for c in cohorts]]


def g_statistic(before: dict[str, int], after: dict[str, int]) -> float:
    if len(set(before) | set(after)) < 2 or not sum(before.values()) or not sum(after.values()):
        return 0.0
    statistic, _, _, _ = chi2_contingency(
        _table(before, after), correction=False, lambda_="log-likelihood"
    )
    return float(statistic)


def g_test_p_value(before: dict[str, int], after: dict[str, int]) -> float:
    """The p-value of "both windows have the same shares"; 1.0 with a single cohort."""
    if len(set(before) | set(after)) < 2:
        return 1.0
    _, p_value, _, _ = chi2_contingency(
        _table(before, after), correction=False, lambda_="log-likelihood"
    )
    return float(p_value)


def change_minute(by_minute: dict[datetime, dict[str, int]]) -> datetime | None:
    """The minute at which the shares most likely changed: the best split of the minutes."""
    minutes = sorted(by_minute)
    best, best_statistic = None, -1.0
    for index in range(1, len(minutes)):
        before = _sum(by_minute[m] for m in minutes[:index])
        after = _sum(by_minute[m] for m in minutes[index:])
        statistic = g_statistic(before, after)
        if statistic > best_statistic:
            best, best_statistic = minutes[index], statistic
    return best


def _sum(counts_list) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in counts_list:
        for cohort, count in counts.items():
            total[cohort] = total.get(cohort, 0) + count
    return total
