"""The CD gate: may this service deploy now?

A pipeline must never pass by accident: a service Monoenv has never heard of
(a typo, a renamed service) is not allowed, it is unknown, and the answer
names the known services closest to what was asked. Flags get the same
answers (?flag=KEY) from the check flags/gate.py registers here.
"""

import difflib
from dataclasses import dataclass, field
from datetime import datetime

from deployments import slo_link
from deployments.models import Deployment, Verdict
from telemetry import spans

CLOSE_MATCHES = 3
# difflib's ratio; 0.6 is its default and catches one or two wrong letters.
CLOSE_CUTOFF = 0.6
LISTED_WHEN_NOTHING_CLOSE = 10


@dataclass
class GateAnswer:
    service: str
    allow: bool = True
    reasons: list[str] = field(default_factory=list)
    flag: str | None = None


# Apps above deployments gate their own kinds of change (flags: ?flag=KEY).
# deployments cannot import them, so they register a checker from ready():
# an object with unknown_message(key) -> str | None and reasons(key, now=) -> list.
_change_checks: dict = {}


def register_change_check(kind: str, checker) -> None:
    _change_checks[kind] = checker


def unknown_flag_message(flag: str) -> str | None:
    return _change_checks["flag"].unknown_message(flag)


def check_flag(flag: str, *, now: datetime) -> GateAnswer:
    """Refuse while the flag's latest change failed (flags/gate.py says why)."""
    answer = GateAnswer(service="", flag=flag)
    answer.reasons += _change_checks["flag"].reasons(flag, now=now)
    answer.allow = not answer.reasons
    return answer


def known_services() -> list[str]:
    """Services that sent a span in the kept days, or have a deploy recorded."""
    deployed = Deployment.objects.values_list("service", flat=True).distinct()
    return sorted(set(spans.known_services()) | set(deployed))


def unknown_service_message(service: str) -> str | None:
    """None for a known service (one with spans, a deploy or an SLO); else why it
    is refused, with the closest known names."""
    known = known_services()
    if service in known or slo_link.slos_of(service):
        return None
    close = difflib.get_close_matches(service, known, n=CLOSE_MATCHES, cutoff=CLOSE_CUTOFF)
    if close:
        hint = "Did you mean " + " or ".join(close) + "?"
    elif known:
        hint = "Known services: " + ", ".join(known[:LISTED_WHEN_NOTHING_CLOSE]) + (
            ", …" if len(known) > LISTED_WHEN_NOTHING_CLOSE else ""
        ) + "."  # fmt: skip
    else:
        hint = "No service is known yet."
    return (
        f"Unknown service {service!r}. {hint} A service is known once it has sent a span, "
        "had a deploy posted or been given an SLO."
    )


def mistyped_environment_message(service: str, environment: str | None) -> str | None:
    """Why an environment looks like a typo of one the service deploys to, if it does.

    A new environment is allowed (its first deploy has to pass somewhere); one
    a letter or two away from a known one would skip that one's failed deploy.
    """
    if not environment:
        return None
    known = set(
        Deployment.objects.filter(service=service).values_list("environment", flat=True)
    ) - {""}
    if environment in known:
        return None
    close = difflib.get_close_matches(environment, sorted(known), n=CLOSE_MATCHES,
                                      cutoff=CLOSE_CUTOFF)  # fmt: skip
    if not close:
        return None
    return (
        f"Unknown environment {environment!r} for {service}. Did you mean "
        + " or ".join(close)
        + "? Its deploys went to: "
        + ", ".join(sorted(known))
        + "."
    )


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
