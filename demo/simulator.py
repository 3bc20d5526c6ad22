"""The demo: a small shop's traffic, deploys and regressions, sent to Monoenv over OTLP.

Four services call each other (frontend → checkout → payments and inventory;
frontend → inventory), each with its own OpenTelemetry SDK TracerProvider and
OTLP/HTTP exporter; W3C trace context is injected into and extracted from
headers at every call, so traces cross services. Span times are simulated
(no sleeping per request), which also lets it backfill the last minutes.

Every service is named `demo-…` and carries `monoenv.demo=true` on its
resource (telemetry/demo.py), so pages can label it and `manage.py
clear_demo` can remove it. The demo defines a couple of SLOs through the API,
so the budgets page has something to show.

Every cycle (10 simulated minutes) brings deploys, some through the API and
some only as a new service.version: a clean deploy (checkout) every cycle,
and regressions twice an hour: a downstream error spike (payments) and its
rollback in minutes 3-5, a slow route (inventory) and a new exception type
(frontend) in minutes 36-39.

So Monoenv opens an incident from the payments deploy's failed verdict,
proposes mitigated at the rollback and resolved once the calm has lasted
MONOENV_INCIDENT_SUSTAIN_MINUTES (15); no other regression comes before
then, or it would join the incident and keep it open. `make run` backfills
minutes 0-29, so that incident is there, whole, when a newcomer arrives. The
demo's Responder, standing in for the on-call person, confirms both and
leaves a note and an action item, so a newcomer sees a whole incident, with
its post-mortem draft, within minutes (tests/demo/test_incident.py).

Requests also evaluate feature flags through the OpenFeature SDK and its
OpenTelemetry hook (demo/rollouts.py), for a user carried in W3C baggage
from the front end down. The rollouts widen and narrow on an hourly
schedule, posted to /api/v1/flags/changes as a flag system would (one flag
is left for Monoenv to detect), and one variant, new-checkout=on, fails
POST /checkout more often.
"""

import random
import time
from dataclasses import dataclass, field

import requests
from opentelemetry import baggage, propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from demo import rollouts
from telemetry.demo import DEMO_PREFIX, DEMO_RESOURCE_ATTRIBUTE

NS = 1_000_000_000
MS = 1_000_000
CYCLE_MINUTES = 10

FRONTEND, CHECKOUT, PAYMENTS, INVENTORY = (
    f"{DEMO_PREFIX}{name}" for name in ("frontend", "checkout", "payments", "inventory")
)
# service: {route: (median ms, calls [(service, route)])}
TOPOLOGY = {
    FRONTEND: {
        "GET /": (12, []),
        "GET /product/{id}": (18, [(INVENTORY, "GET /stock/{id}")]),
        "POST /checkout": (25, [(CHECKOUT, "POST /orders")]),
    },
    CHECKOUT: {
        "POST /orders": (30, [(INVENTORY, "POST /reserve"), (PAYMENTS, "POST /charge")])
    },
    PAYMENTS: {"POST /charge": (60, [])},
    INVENTORY: {"GET /stock/{id}": (8, []), "POST /reserve": (15, [])},
}
SERVICES = tuple(TOPOLOGY)
# Defined through the API at start, so the budgets page is not empty.
SLOS = [
    {
        "name": "demo-checkout-availability",
        "display_name": "Demo: orders succeed",
        "service": CHECKOUT,
        "objective": 99.5,
        "window": "7d",
    },
    {
        "name": "demo-frontend-latency",
        # Checkout's whole call chain takes about 130 ms: a tighter threshold pages for ever.
        "display_name": "Demo: pages load within 300 ms",
        "service": FRONTEND,
        "sli": "latency",
        "threshold_ms": 300,
        "latency_requires_success": True,
        "objective": 99,
        "window": "7d",
    },
]
ENTRY_ROUTES = [("GET /", 0.5), ("GET /product/{id}", 0.35), ("POST /checkout", 0.15)]
BASE_ERROR_RATE = 0.003
ENVIRONMENT = "production"
# Users the front end serves; flags bucket them, so each keeps its variant.
USERS = 2000
CYCLES_PER_HOUR = 60 // CYCLE_MINUTES


@dataclass
class Behaviour:
    """What a version of a service does differently."""

    error_rate: float = BASE_ERROR_RATE
    slow_route: str = ""
    slowdown: float = 1.0
    new_exception: str = ""


@dataclass
class ServiceState:
    name: str
    version: str
    provider: TracerProvider
    behaviour: Behaviour = field(default_factory=Behaviour)
    history: list[str] = field(default_factory=list)


# Each hour's first cycle (minutes 0-9) and fourth (30-39) regress, half an hour apart.
EVERY_CYCLE, FIRST, FOURTH = range(CYCLES_PER_HOUR), (0,), (3,)
# (minute in the cycle, service, behaviour, announce through the API, the cycles of the hour
# it comes in). The slow route is one no flag is evaluated on: a slowdown while a flag's
# cohorts are unequal would pass for the flag's own regression.
SCHEDULE = [
    (1, CHECKOUT, Behaviour(), True, EVERY_CYCLE),
    (3, PAYMENTS, Behaviour(error_rate=0.08), True, FIRST),
    (5, PAYMENTS, None, True, FIRST),  # rollback to the version before
    (6, INVENTORY, Behaviour(slow_route="POST /reserve", slowdown=3.0), False, FOURTH),
    (8, INVENTORY, None, False, FOURTH),
    (8, FRONTEND, Behaviour(new_exception="CartSerializationError", error_rate=0.02), True, FOURTH),
    (9, FRONTEND, None, True, FOURTH),
]


class Simulation:
    """`token` sends the spans (ingest scope); `api_token` posts deploys, SLOs and flag changes
    (deploy). `exporter`, given a service name, makes its span exporter (default: OTLP/HTTP to
    `endpoint`)."""

    def __init__(
        self, *, endpoint: str, api: str, token: str, api_token: str, rate: float, seed: int, log,
        exporter=None,
    ):  # fmt: skip
        self.endpoint = endpoint.rstrip("/")
        self.api = api.rstrip("/")
        self.token = token
        self.api_token = api_token
        self.rate = rate
        self.rng = random.Random(seed)
        self.log = log
        self.exporter = exporter or self._otlp_exporter
        self.flags = rollouts.FlagSystem()
        # The end of the traffic sent so far, once a backfill has sent some.
        self.sent_until_ns: int | None = None
        self.services = {name: self._state(name, "1.0.0", Behaviour()) for name in TOPOLOGY}
        self.minor = dict.fromkeys(TOPOLOGY, 0)

    def _state(self, name: str, version: str, behaviour: Behaviour) -> ServiceState:
        resource = Resource.create(
            {
                "service.name": name,
                "service.version": version,
                "deployment.environment.name": ENVIRONMENT,
                DEMO_RESOURCE_ATTRIBUTE: True,
            }
        )
        provider = TracerProvider(resource=resource)
        processor = BatchSpanProcessor(
            self.exporter(name), max_queue_size=50_000, schedule_delay_millis=1000
        )
        provider.add_span_processor(processor)
        return ServiceState(name, version, provider, behaviour)

    def _otlp_exporter(self, service: str) -> OTLPSpanExporter:
        return OTLPSpanExporter(
            endpoint=f"{self.endpoint}/v1/traces",
            headers={"Authorization": f"Bearer {self.token}"},
        )

    # SLOs.

    def define_slos(self) -> None:
        """Create the demo's SLOs that do not exist yet; a failure only logs."""
        url = f"{self.api}/api/v1/slos"
        headers = {"Authorization": f"Bearer {self.api_token}"}
        try:
            existing = requests.get(url, headers=headers, timeout=10)
            existing.raise_for_status()
            names = {slo["name"] for slo in existing.json()}
            for slo in SLOS:
                if slo["name"] not in names:
                    requests.post(url, json=slo, headers=headers, timeout=10).raise_for_status()
                    self.log(f"defined SLO {slo['name']}")
        except requests.RequestException as exc:
            self.log(f"defining the demo SLOs failed ({exc}); the budgets page stays empty")

    # Deploys.

    def deploy(self, name: str, behaviour: Behaviour | None, *, announce: bool, at_ns: int):
        current = self.services[name]
        if behaviour is None and current.history:
            version, behaviour, what = current.history[-1], Behaviour(), "rollback"
        else:
            self.minor[name] += 1
            version = f"1.{self.minor[name]}.0"
            behaviour = behaviour or Behaviour()
            what = "deploy"
        current.provider.force_flush()
        current.provider.shutdown()
        state = self._state(name, version, behaviour)
        state.history = [*current.history, current.version]
        self.services[name] = state
        self.log(f"{what}: {name} {current.version} -> {version} {_describe(behaviour)}")
        if announce:
            self._post_deploy(name, version, at_ns, rollback=what == "rollback")

    def _post_deploy(self, name: str, version: str, at_ns: int, *, rollback: bool):
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at_ns / NS))
        body = {
            "service": name,
            "version": version,
            "started_at": started,
            "deployer": "simulator",
            "commit_sha": f"{self.rng.getrandbits(160):040x}",
            "description": "rollback" if rollback else f"release {version}",
        }
        try:
            response = requests.post(
                f"{self.api}/api/v1/deployments",
                json=body,
                headers={"Authorization": f"Bearer {self.api_token}"},
                timeout=10,
            )
            response.raise_for_status()
        except requests.RequestException as exc:
            # The version change alone still makes a detected deploy.
            self.log(f"posting the deploy failed ({exc}); it will be detected from spans")

    # Flag rollouts.

    def roll_out(self, step: rollouts.Step, *, at_ns: int) -> None:
        self.flags.percents[step.flag] = step.percent
        announced = "posted" if step.announce else "left for Monoenv to detect"
        self.log(f"flag {step.flag}: {step.percent:g}% of users on ({announced})")
        if step.announce:
            self._post_flag_change(step, at_ns)

    def _post_flag_change(self, step: rollouts.Step, at_ns: int) -> None:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at_ns / NS))
        body = rollouts.rollout_body(step, at=at, environment=ENVIRONMENT)
        try:
            response = requests.post(
                f"{self.api}/api/v1/flags/changes",
                json=body,
                headers={"Authorization": f"Bearer {self.api_token}"},
                timeout=10,
            )
            response.raise_for_status()
        except requests.RequestException as exc:
            # The shares still move: Monoenv's detection can still find the change.
            self.log(f"posting the flag change failed ({exc}); it is left to detection")

    # Traffic.

    def traffic(self, start_ns: int, seconds: float) -> int:
        count = _poisson(self.rng, self.rate * seconds)
        routes, weights = zip(*ENTRY_ROUTES, strict=True)
        for _ in range(count):
            at = start_ns + int(self.rng.uniform(0, seconds) * NS)
            route = self.rng.choices(routes, weights)[0]
            user = f"user-{self.rng.randrange(USERS)}"
            headers: dict[str, str] = {}
            propagate.inject(headers, context=baggage.set_baggage("user.id", user))
            self._serve(FRONTEND, route, at, headers=headers)
        return count

    def _serve(self, name: str, route: str, at_ns: int, *, headers: dict) -> tuple[int, bool]:
        """One server span and its calls; return its end time and whether it failed."""
        state = self.services[name]
        tracer = state.provider.get_tracer("monoenv.simulator")
        median, calls = TOPOLOGY[name][route]
        behaviour = state.behaviour
        method, path = route.split(" ", 1)
        context = propagate.extract(headers)
        user = str(baggage.get_baggage("user.id", context) or "")
        span = tracer.start_span(
            route,
            context=context,
            kind=SpanKind.SERVER,
            start_time=at_ns,
            attributes={"http.request.method": method, "http.route": path, "user.id": user},
        )
        variants = self.flags.evaluate(name, route, user=user, span=span, at_ns=at_ns)
        own_ms = median * self.rng.lognormvariate(0, 0.35)
        if route == behaviour.slow_route:
            own_ms *= behaviour.slowdown
        own_ms *= _flag_speedup(variants, route)
        now = at_ns + int(own_ms * MS / 2)
        failed_below = False
        for callee, callee_route in calls:
            now, failed = self._call(state, span, context, callee, callee_route, now)
            failed_below |= failed
        end = now + int(own_ms * MS / 2)
        flag_error = self._flag_error(variants, route)
        failed = failed_below or bool(flag_error) or self.rng.random() < behaviour.error_rate
        if failed:
            error_type = flag_error or behaviour.new_exception or _usual_error(name)
            span.add_event(
                "exception",
                {"exception.type": error_type, "exception.message": f"{route} failed"},
                timestamp=end,
            )
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.set_attribute("http.response.status_code", 500 if failed else 200)
        span.end(end_time=end)
        return end, failed

    def _flag_error(self, variants: dict, route: str) -> str:
        """The error type a flag's variant raises on this request, if it does."""
        for key, variant in variants.items():
            flag = rollouts.FLAGS[key]
            if variant == rollouts.ON and route == flag.regressed_route:
                if self.rng.random() < flag.extra_error_rate:
                    return flag.error_type
        return ""

    def _call(self, state: ServiceState, parent, context, callee: str, route: str, at_ns: int):
        """A client span to `callee`, with trace context and baggage in its headers."""
        tracer = state.provider.get_tracer("monoenv.simulator")
        context = trace.set_span_in_context(parent, context)
        client = tracer.start_span(route, context=context, kind=SpanKind.CLIENT, start_time=at_ns)
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(client, context))
        network = int(self.rng.uniform(0.3, 1.5) * MS)
        end, failed = self._serve(callee, route, at_ns + network, headers=headers)
        if failed:
            client.set_status(Status(StatusCode.ERROR, f"{callee} answered 500"))
        client.set_attribute("http.response.status_code", 500 if failed else 200)
        client.end(end_time=end + network)
        return end + network, failed

    def flush(self):
        for state in self.services.values():
            state.provider.force_flush()

    def shutdown(self):
        for state in self.services.values():
            state.provider.shutdown()


def _flag_speedup(variants: dict, route: str) -> float:
    speedup = 1.0
    for key, variant in variants.items():
        flag = rollouts.FLAGS[key]
        if variant == rollouts.ON and route == flag.faster_route:
            speedup *= flag.speedup
    return speedup


def _usual_error(service: str) -> str:
    return {PAYMENTS: "CardProcessorTimeout", INVENTORY: "StockLookupError"}.get(
        service, "UpstreamError"
    )


def _describe(behaviour: Behaviour) -> str:
    if behaviour.new_exception:
        return f"(raises a new {behaviour.new_exception})"
    if behaviour.slow_route:
        return f"({behaviour.slow_route} ×{behaviour.slowdown:g} slower)"
    if behaviour.error_rate > BASE_ERROR_RATE:
        return f"(error rate {behaviour.error_rate:.0%})"
    return "(clean)"


def _poisson(rng: random.Random, mean: float) -> int:
    # Sum of exponential gaps: fine for the few hundred a second we need.
    count, total = 0, rng.expovariate(1.0)
    while total < mean:
        count += 1
        total += rng.expovariate(1.0)
    return count


def backfill(
    simulation: Simulation, minutes: int, *, first_minute: int = 0, until_ns: int | None = None
) -> int:
    """Send the `minutes` minutes before `until_ns` (default now) at once, as the demo's minutes
    from `first_minute` on; return the minute the stream goes on from."""
    start = (until_ns or time.time_ns()) - minutes * 60 * NS
    simulation.flags.set_minute(first_minute)
    for offset in range(minutes):
        minute, minute_start = first_minute + offset, start + offset * 60 * NS
        _apply_schedule(simulation, minute, minute_start)
        simulation.traffic(minute_start, 60)
        simulation.flush()
    if minutes:
        simulation.sent_until_ns = start + minutes * 60 * NS
        simulation.log(f"backfilled {minutes} minute(s)")
    return first_minute + minutes


def stream(
    simulation: Simulation, minute: int, duration: float, responder: "Responder | None" = None
) -> None:
    """Send live traffic for `duration` seconds (0: until interrupted); respond each minute.

    It goes on from where the backfill stopped: sending the backfill takes a
    while, and a hole in the traffic would look like an outage.
    """
    began = time.monotonic()
    tick_start = simulation.sent_until_ns or time.time_ns()
    minute_mark = tick_start
    # The backfill stopped before this minute: its changes come now.
    _apply_schedule(simulation, minute, tick_start)
    while not duration or time.monotonic() - began < duration:
        time.sleep(1)
        now = time.time_ns()
        while now - minute_mark >= 60 * NS:
            minute, minute_mark = minute + 1, minute_mark + 60 * NS
            simulation.traffic(tick_start, (minute_mark - tick_start) / NS)
            tick_start = minute_mark
            _apply_schedule(simulation, minute, minute_mark)
            if responder is not None:
                responder.act()
        simulation.traffic(tick_start, (now - tick_start) / NS)
        tick_start = now


def _apply_schedule(simulation: Simulation, minute: int, at_ns: int) -> None:
    cycle = minute // CYCLE_MINUTES
    for at_minute, service, behaviour, announce, cycles in SCHEDULE:
        if minute % CYCLE_MINUTES == at_minute and cycle % CYCLES_PER_HOUR in cycles:
            simulation.deploy(service, behaviour, announce=announce, at_ns=at_ns)
    for step in rollouts.steps_at(minute):
        simulation.roll_out(step, at_ns=at_ns)


class Responder:
    """The demo's on-call person: confirms what Monoenv proposes for the demo's incidents.

    Needs a token with the `read` and `incident` scopes. Only incidents of
    demo services are touched; a failed call is logged and tried next minute.
    """

    NOTE = "Demo responder: the rollback of the payments deploy stopped the errors."
    ACTION = "Canary payments deploys on a share of traffic before the full rollout"

    def __init__(self, *, api: str, token: str, log):
        self.api, self.token, self.log = api.rstrip("/"), token, log

    def act(self) -> None:
        try:
            for incident in self._call("get", "/api/v1/incidents?status=open") + self._call(
                "get", "/api/v1/incidents?status=mitigated"
            ):
                if all(service.startswith(DEMO_PREFIX) for service in incident["services"]):
                    self._confirm(incident)
        except requests.RequestException as exc:
            self.log(f"the demo responder's API call failed ({exc})")

    def _confirm(self, incident: dict) -> None:
        path = f"/api/v1/incidents/{incident['id']}"
        if incident["proposed_resolved_at"]:
            self._call("post", f"{path}/notes", {"text": self.NOTE})
            self._call("post", f"{path}/action-items",
                       {"title": self.ACTION, "kind": "prevent", "owner": "demo team"})  # fmt: skip
            self._call("patch", path, {"status": "resolved", "owner": "demo on-call"})
            self.log(f"responder: resolved incident #{incident['id']} as Monoenv proposed")
        elif incident["proposed_mitigated_at"] and incident["status"] == "open":
            self._call("patch", path, {"status": "mitigated", "owner": "demo on-call"})
            self.log(f"responder: confirmed incident #{incident['id']} mitigated")

    def _call(self, method: str, path: str, body: dict | None = None):
        response = requests.request(
            method, self.api + path, json=body, timeout=10,
            headers={"Authorization": f"Bearer {self.token}"},
        )  # fmt: skip
        response.raise_for_status()
        return response.json()

