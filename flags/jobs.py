"""The periodic work of flags, run each minute by beat or once by hand.

`run_periodic()` attributes what evaluations it can to their requests first,
so detection and, later, verdicts see every cohort's requests; then it
records the changes telemetry shows (flags/changes.py).
"""

from datetime import datetime

from django.utils import timezone

from flags import changes
from telemetry import flag_store


def run_periodic(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    attributed = flag_store.attribute_pending(now=now)
    detected = changes.detect_changes(now=now)
    return {"attribution": attributed, "detected": len(detected)}


def run_once() -> str:
    """For manage.py flags: one synchronous pass, as a line of text."""
    done = run_periodic()
    counts = done["attribution"]
    return (
        f"{counts['attributed']} evaluation(s) attributed, {counts['waiting']} waiting, "
        f"{counts['unresolved']} unresolved; {done['detected']} flag change(s) detected"
    )
