"""Which cohort of a flag is the control, the one every other cohort is judged against.

Pure code with no Django. In this order:
1. the per-flag override, when one is set;
2. a cohort named `control`, `off` or `false` (in that order, any case);
3. the flag's default variant: the cohort served most for the reason `default`;
4. the largest cohort before the change.
An error cohort (`error:<type>`) is never the control: it is what a provider
outage looks like, a regression to find, not a baseline.
"""

from dataclasses import dataclass

CONTROL_NAMES = ("control", "off", "false")
ERROR_PREFIX = "error:"


@dataclass(frozen=True)
class Control:
    cohort: str  # "" when there is nothing to choose from
    reason: str


def choose_control(
    *,
    cohorts: set[str] | frozenset[str],
    before: dict[str, int],
    defaults: dict[str, int],
    override: str = "",
) -> Control:
    """The control among the cohorts seen (before and after the change)."""
    if override:
        return Control(override, "set for this flag")
    candidates = {cohort for cohort in cohorts | set(before) if not _is_error(cohort)}
    by_lower = {cohort.lower(): cohort for cohort in sorted(candidates)}
    for name in CONTROL_NAMES:
        if name in by_lower:
            return Control(by_lower[name], f"the variant named {name!r}")
    served_default = _largest({c: n for c, n in defaults.items() if c in candidates})
    if served_default:
        return Control(served_default, "the flag's default variant (reason 'default')")
    largest = _largest({c: n for c, n in before.items() if c in candidates})
    if largest:
        return Control(largest, "the largest cohort before the change")
    return Control("", "no cohort to compare with")


def _is_error(cohort: str) -> bool:
    return cohort.startswith(ERROR_PREFIX)


def _largest(counts: dict[str, int]) -> str:
    # Ties go to the name that sorts first, so the choice does not flicker.
    ranked = sorted((c for c, n in counts.items() if n > 0), key=lambda c: (-counts[c], c))
    return ranked[0] if ranked else ""
