"""The flag branch of the CD gate: may this flag's rollout widen now?

Registered with deployments/gate.py (deployments cannot import flags). As for
services, a flag Monoenv has never heard of is unknown, not allowed: a typo
in a pipeline must not pass.
"""

import difflib
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from deployments.models import Verdict
from flags.models import FlagChange
from telemetry import flag_store

CLOSE_MATCHES = 3
# Close names are looked for among the flags changed, and evaluated this recently.
RECENT = timedelta(hours=1)


def reasons(flag: str, *, now: datetime) -> list[str]:
    """Refuse while the flag's latest change has the verdict fail."""
    latest = FlagChange.objects.latest_for(flag)
    if latest is None or latest.verdict != Verdict.FAIL:
        return []
    return [
        f"The latest change of {flag}, at {latest.at:%Y-%m-%d %H:%M} UTC ({latest.source}), "
        f"has the verdict fail: {latest.verdict_reason}. The rollout must not widen."
    ]


def unknown_message(flag: str) -> str | None:
    """None for a flag with a change or an evaluation kept; else why, with close names."""
    now = timezone.now()
    retention = timedelta(days=settings.MONOENV_RETENTION_DAYS)
    if FlagChange.objects.filter(flag=flag).exists() or flag_store.flag_evaluated(
        flag, since=now - retention
    ):
        return None
    known = set(FlagChange.objects.values_list("flag", flat=True).distinct())
    known |= {seen.flag for seen in flag_store.flags_seen(now - RECENT, now)}
    close = difflib.get_close_matches(flag, sorted(known), n=CLOSE_MATCHES)
    hint = "Did you mean " + " or ".join(close) + "? " if close else ""
    return (
        f"Unknown flag {flag!r}. {hint}A flag is known once it has been evaluated "
        "or had a change posted."
    )
