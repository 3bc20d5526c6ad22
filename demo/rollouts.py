"""The demo's flag system: rollouts that widen and narrow on an hourly schedule.

Flags are evaluated through the real OpenFeature Python SDK, served by the
SDK's own in-memory provider, and reported by the OpenTelemetry hook of
`openfeature-hooks-opentelemetry` (`TracingHook`), which adds a
`feature_flag.evaluation` event to the current span, as a service using
OpenFeature would send it.

Each flag's `context_evaluator` reads the percent of users its rollout serves
`on` right now, and puts a user in a fixed bucket in [0, 100) from a hash of
(flag, user): a user keeps its variant while the rollout stays, and a user
served `on` at 10% is still `on` at 50%, since widening only adds buckets.

The schedule (ROLLOUTS) repeats every hour and ends each hour where it
began, every flag at 0%. The simulator posts the steps marked `announce` to
Monoenv as a flag system's pipeline would; the others Monoenv must detect
from the variant shares alone. README.md's demo section tells the story.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from openfeature import api
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
from opentelemetry import trace

from telemetry.demo import DEMO_PREFIX

CYCLE_MINUTES = 60
ON, OFF = "on", "off"
FRONTEND, INVENTORY = f"{DEMO_PREFIX}frontend", f"{DEMO_PREFIX}inventory"


@dataclass(frozen=True)
class Flag:
    """A boolean flag, the routes of one service that evaluate it, and what `on` does there."""

    key: str
    service: str
    routes: tuple[str, ...]
    # `on` adds this error rate on `regressed_route`, raising `error_type`.
    regressed_route: str = ""
    extra_error_rate: float = 0.0
    error_type: str = ""
    # `on` multiplies the service's own time on `faster_route` by this.
    faster_route: str = ""
    speedup: float = 1.0


FLAGS = {
    flag.key: flag
    for flag in (
        # The failing rollout: its `on` cohort errs 5 pp more on checkout, and only there.
        Flag("new-checkout", FRONTEND, ("GET /", "POST /checkout"),
             regressed_route="POST /checkout", extra_error_rate=0.05,
             error_type="NewCheckoutAddressError"),  # fmt: skip
        # A clean rollout, announced at every step.
        Flag("recommendations", FRONTEND, ("GET /product/{id}",)),
        # Never announced: Monoenv finds its changes from the shares. It helps.
        Flag("stock-cache", INVENTORY, ("GET /stock/{id}",),
             faster_route="GET /stock/{id}", speedup=0.6),  # fmt: skip
    )
}


@dataclass(frozen=True)
class Step:
    minute: int  # of the hour
    flag: str
    percent: float  # of users served `on`
    announce: bool
    description: str


# Minutes 0-29 are what `make run` backfills, so a newcomer arrives (minute 30)
# to a rollout that went to 10% at minute 22 and is failing, rolled back at 36.
ROLLOUTS = [
    Step(2, "recommendations", 1, True, "recommendations to 1% of users"),
    Step(8, "recommendations", 10, True, "recommendations widened to 10%"),
    Step(12, "new-checkout", 1, True, "new checkout to 1% of users"),
    Step(14, "recommendations", 50, True, "recommendations widened to 50%"),
    Step(20, "stock-cache", 50, False, ""),
    Step(22, "new-checkout", 10, True, "new checkout widened to 10%"),
    Step(36, "new-checkout", 0, True, "rollback: new checkout off, it fails on POST /checkout"),
    # After the frontend's bad deploy (minutes 38-39), which both cohorts then shared.
    Step(40, "recommendations", 100, True, "recommendations to everyone"),
    Step(45, "stock-cache", 0, False, ""),
    Step(58, "recommendations", 0, True, "recommendations off: the next hour tries again"),
]


def steps_at(minute: int) -> list[Step]:
    """The steps that happen at `minute` (counted from the start of the demo)."""
    return [step for step in ROLLOUTS if step.minute == minute % CYCLE_MINUTES]


def percents_at(minute: int) -> dict[str, float]:
    """Each flag's rollout in force during `minute`, from the schedule alone."""
    percents = dict.fromkeys(FLAGS, 0.0)
    for step in sorted(ROLLOUTS, key=lambda s: s.minute):
        if step.minute <= minute % CYCLE_MINUTES:
            percents[step.flag] = step.percent
    return percents


def bucket(flag: str, user: str) -> float:
    """The user's fixed place in [0, 100) for this flag."""
    digest = hashlib.sha256(f"{flag}\0{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def rollout_body(step: Step, *, at: str, environment: str) -> dict:
    """The change as a flag system's pipeline posts it to /api/v1/flags/changes."""
    return {
        "flag": step.flag,
        "environment": environment,
        "services": [FLAGS[step.flag].service],
        "at": at,
        "actor": "demo flag system",
        "description": step.description,
        "rollout": {ON: step.percent, OFF: 100 - step.percent},
    }


class FlagSystem:
    """The OpenFeature client of the demo's services, with the rollouts it serves now."""

    PROVIDER_DOMAIN = "monoenv-demo"

    def __init__(self):
        self.percents = percents_at(0)
        flags = {
            key: InMemoryFlag(OFF, {ON: True, OFF: False},
                              context_evaluator=partial(self._resolve, key))  # fmt: skip
            for key in FLAGS
        }
        # One domain for the demo: a later Simulation in the same process takes it over.
        api.set_provider(InMemoryProvider(flags), self.PROVIDER_DOMAIN)
        self.client = api.get_client(self.PROVIDER_DOMAIN)
        self.client.add_hooks([TracingHook()])

    def _resolve(self, key: str, flag: InMemoryFlag, context: EvaluationContext):
        percent = self.percents[key]
        served = ON if bucket(key, context.targeting_key or "") < percent else OFF
        # All or nobody is a static answer; anything between is a split.
        reason = Reason.STATIC if percent in (0, 100) else Reason.SPLIT
        return FlagResolutionDetails(value=flag.variants[served], variant=served, reason=reason)

    def set_minute(self, minute: int) -> None:
        self.percents = percents_at(minute)

    def evaluate(self, service: str, route: str, *, user: str, span, at_ns: int) -> dict:
        """Evaluate the flags this route uses, on `span`; return each flag's variant."""
        variants = {}
        with _current(span, at_ns):
            for flag in FLAGS.values():
                if flag.service == service and route in flag.routes:
                    details = self.client.get_boolean_details(
                        flag.key, False, EvaluationContext(targeting_key=user)
                    )
                    variants[flag.key] = details.variant or (ON if details.value else OFF)
        return variants


@contextmanager
def _current(span, at_ns: int) -> Iterator[None]:
    with trace.use_span(_SimulatedClock(span, at_ns), end_on_exit=False):
        yield


class _SimulatedClock(trace.Span):
    """The request's span, as the hook sees it, with events stamped at the simulated time.

    The hook adds its event without a timestamp, so the SDK would stamp it
    with the wall clock; the simulator's spans run on simulated time (it
    backfills the past), and an evaluation must fall inside its request.
    """

    def __init__(self, span, at_ns: int):
        self._span, self._at_ns = span, at_ns

    def add_event(self, name, attributes=None, timestamp=None) -> None:
        self._span.add_event(name, attributes, self._at_ns if timestamp is None else timestamp)

    def get_span_context(self):
        return self._span.get_span_context()

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_attribute(self, key, value) -> None:
        self._span.set_attribute(key, value)

    def set_attributes(self, attributes) -> None:
        self._span.set_attributes(attributes)

    def set_status(self, status, description=None) -> None:
        self._span.set_status(status, description)

    def record_exception(self, exception, attributes=None, timestamp=None, escaped=False):
        stamp = self._at_ns if timestamp is None else timestamp
        self._span.record_exception(exception, attributes, stamp, escaped)

    def update_name(self, name) -> None:
        self._span.update_name(name)

    def end(self, end_time=None) -> None:
        self._span.end(end_time)
