"""The notification of a failing rollout, through the one outbox (notifications/)."""

from dataclasses import dataclass

from flags.models import FlagChange
from notifications.message import Message


@dataclass(frozen=True)
class FailingCohort:
    """One cohort of one service that failed against the control, in words."""

    service: str
    variant: str
    findings: str  # the verdict engine's sentence for it


def fail_message(change: FlagChange, failing: list[FailingCohort]) -> Message:
    """Names the flag, the variant(s), the findings and the link, as a deploy fail does."""
    cohorts = "; ".join(
        f"{c.service}, {change.flag}={c.variant} against {change.control}: {c.findings}"
        for c in failing
    )
    return Message(
        event="flag_verdict",
        # A failing rollout is urgent like a failing deploy: it goes to the targets taking pages.
        severity="page",
        summary=f"[ROLLOUT FAIL] {change.flag}: {cohorts} The rollout must not widen.",
        link=change.link(),
        link_text=f"flag {change.flag}",
        subject=f"flags.flagchange:{change.pk}",
        details={
            "verdict": change.verdict,
            "flag": change.flag,
            "change": {
                "id": change.pk,
                "at": change.at.isoformat(),
                "source": change.source,
                "environment": change.environment,
                "services": change.services,
                "actor": change.actor,
                "url": change.url,
            },
            "control": change.control,
            "failing": [
                {"service": c.service, "variant": c.variant, "findings": c.findings}
                for c in failing
            ],
        },
    )
