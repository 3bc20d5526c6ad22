"""The periodic work of flags, run each minute by beat or once by hand.

`run_periodic()` records the changes telemetry shows (flags/changes.py),
takes the verdicts' looks that are due, and ranks the suspects of failed
rollouts (flags/suspects.py).
Attributing evaluations to requests is telemetry's own periodic task; the
command runs it first, so a cron user needs only `manage.py flags`.
"""

from datetime import datetime

from django.utils import timezone

from flags import changes, suspects, verdicts
from telemetry import flag_store

# As long as the attribution task may run within its 30 s beat interval.
ATTRIBUTION_SECONDS = 25


def run_periodic(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    detected = changes.detect_changes(now=now)
    looked = verdicts.evaluate_due(now=now)
    explained = suspects.explain_failed_rollouts(now=now)
    return {"detected": len(detected), "looks": looked, "explained": explained}


def run_once() -> str:
    """For manage.py flags: attribution, then detection, as a line of text."""
    counts = flag_store.attribute_pending_for(ATTRIBUTION_SECONDS)
    done = run_periodic()
    return (
        f"{counts['attributed']} evaluation(s) attributed, {counts['waiting']} waiting, "
        f"{counts['unresolved']} unresolved; {done['detected']} flag change(s) detected, "
        f"{done['looks']} look(s) taken"
    )
