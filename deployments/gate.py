"""The CD gate: may this service deploy now?"""

from dataclasses import dataclass, field
from datetime import datetime

from deployments import slo_link
from deployments.models import Deployment, Verdict


@dataclass
class GateAnswer:
    service: str
    allow: bool = True
    reasons: list[str] = field(default_factory=list)


def check(service: str, *, now: datetime, environment: str | None = None) -> GateAnswer:
    """Refuse while the budget is spent, a page fires, or the last deploy failed."""
    answer = GateAnswer(service=service)
    answer.reasons += slo_link.exhausted_budgets(service, now=now)
    answer.reasons += slo_link.firing_alert_reasons(service)
    latest = Deployment.objects.latest_for(service, environment=environment)
    if latest is not None and latest.verdict == Verdict.FAIL:
        answer.reasons.append(
            f"The latest deploy, {latest.version} at {latest.started_at:%Y-%m-%d %H:%M} UTC, "
            f"has the verdict fail: {latest.verdict_reason}"
        )
    answer.allow = not answer.reasons
    return answer
