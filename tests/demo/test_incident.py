"""A whole demo incident, watched end to end: the simulator, `manage.py evaluate`, the responder.

The demo backfills its first minutes as `make run` does: the payments deploy
of minute 3 fails (8% of charges fail), the rollback of minute 5 brings the
calm back. Then each `manage.py evaluate` runs what beat would, and the
demo's responder acts as it does each minute of the stream, until the
incident is resolved: the test waits on that, pass by pass, never on a clock.
"""

import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from demo import simulator
from deployments.models import Deployment, Verdict
from incidents.models import EntryKind, Incident, IncidentSignal, SignalKind, Status

pytestmark = pytest.mark.django_db(transaction=True)

NS = 1_000_000_000
# Minute 3 deploys payments 1.1.0, minute 5 rolls it back, and mitigation and
# resolution need MONOENV_INCIDENT_SUSTAIN_MINUTES (15) of calm after it.
MINUTES = 24
MAX_PASSES = 10


def test_the_demo_incident_opens_is_mitigated_and_resolved_with_its_responder(
    live_server, make_token
):
    # On a minute boundary, so the demo's minutes are the rollups' minutes.
    until_ns = time.time_ns() // (60 * NS) * 60 * NS
    start = datetime.fromtimestamp(until_ns / NS, UTC) - timedelta(minutes=MINUTES)
    lines = []
    simulation = simulator.Simulation(
        endpoint=live_server.url, api=live_server.url, token=make_token("ingest"),
        api_token=make_token("deploy", "read"), rate=10, seed=3, log=lines.append,
    )  # fmt: skip
    simulation.define_slos()
    simulator.backfill(simulation, MINUTES, until_ns=until_ns)
    responder = simulator.Responder(
        api=live_server.url, token=make_token("read", "incident"), log=lines.append
    )

    states = watch_until_resolved(simulation, responder)
    simulation.shutdown()

    print("\n".join(["what the demo and its responder did:", *lines, "what was seen:", *states]))
    bad = Deployment.objects.get(service="demo-payments", version="1.1.0")
    rollback = Deployment.objects.get(service="demo-payments", version="1.0.0")
    assert (bad.started_at, rollback.started_at, bad.verdict) == (
        start + timedelta(minutes=3), start + timedelta(minutes=5), Verdict.FAIL
    )  # fmt: skip
    incident = Incident.objects.get()  # no other regression came to join it or open another
    assert (incident.trigger_kind, incident.services) == (SignalKind.VERDICT, ["demo-payments"])
    assert incident.suspects[0]["deployment_id"] == bad.pk
    assert incident.top_suspect == bad
    # The regression began with the deploy's minute, from the rollups, not at detection.
    assert incident.started_at == start + timedelta(minutes=3)
    # Calm came with the rollback; the verdict signal closed there and stayed closed.
    assert incident.proposed_mitigated_at == rollback.started_at
    assert "after the rollback of demo-payments 1.0.0" in incident.proposal_reason
    assert incident.proposed_resolved_at == rollback.started_at
    assert (incident.status, incident.resolved_at, incident.owner) == (
        Status.RESOLVED, rollback.started_at, "demo on-call"
    )  # fmt: skip
    kinds = set(incident.timeline.values_list("kind", flat=True))
    assert {EntryKind.PROPOSAL, EntryKind.NOTE} <= kinds, kinds
    assert incident.action_items.get().kind == "prevent"
    # The next pass settles the impact of an incident resolved since (as beat's next run does).
    call_command("evaluate", stdout=StringIO())
    draft = requests.get(
        f"{live_server.url}/api/v1/incidents/{incident.pk}/postmortem.md",
        headers={"Authorization": f"Bearer {make_token('read')}"}, timeout=10,
    )  # fmt: skip
    print(draft.text)
    assert draft.status_code == 200 and "demo\\-payments 1\\.1\\.0" in draft.text, draft.text
    # From minute 3 to the rollback at minute 5, by hand.
    assert "- **Duration:** 2 min" in draft.text, draft.text


def watch_until_resolved(simulation, responder: simulator.Responder) -> list[str]:
    """Run `manage.py evaluate` and the responder, pass by pass, until the incident is resolved.

    Before each pass the demo sends the traffic since it last did, as its
    stream would: the backfill took a while, and a hole in the traffic would
    look like an outage.
    """
    states = []
    for number in range(1, MAX_PASSES + 1):
        now = time.time_ns()
        simulation.traffic(simulation.sent_until_ns, (now - simulation.sent_until_ns) / NS)
        simulation.flush()
        simulation.sent_until_ns = now
        call_command("evaluate", stdout=StringIO())
        responder.act()
        incidents = list(Incident.objects.order_by("pk"))
        states.append(f"pass {number}: " + "; ".join(
            f"#{i.pk} {i.status} ({i.trigger_kind}, {i.services}, proposed mitigated "
            f"{i.proposed_mitigated_at:%H:%M}, resolved {i.proposed_resolved_at:%H:%M})"
            if i.proposed_resolved_at else f"#{i.pk} {i.status} ({i.trigger_kind}, {i.services})"
            for i in incidents
        ))  # fmt: skip
        if incidents and all(i.status == Status.RESOLVED for i in incidents):
            return states
    signals = [f"{s.kind} {s.service} at {s.at:%H:%M}: {s.summary}, closed {s.closed_at}"
               for s in IncidentSignal.objects.order_by("at")]  # fmt: skip
    pytest.fail(f"no resolved incident after {MAX_PASSES} passes:\n" + "\n".join(states + signals))
