"""The incidents API: `read` reads, `incident` writes, and nothing else does either."""

import json
from datetime import timedelta

import pytest

from incidents.models import EntryKind, Incident, Status
from tests.helpers import bearer
from tests.incidents import factories as f

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)


def send(client, method, path, token, body=None):
    if method == "get":
        return client.get(f"/api/v1{path}", headers=bearer(token))
    return getattr(client, method)(
        f"/api/v1{path}", data=json.dumps(body or {}), content_type="application/json",
        headers=bearer(token),
    )  # fmt: skip


@pytest.fixture
def declared(client, incident_token):
    body = {"title": "Checkout is slow", "services": ["checkout"], "severity": "sev1"}
    return send(client, "post", "/incidents", incident_token, body).json()


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/incidents"), ("patch", "/incidents/1"), ("post", "/incidents/1/notes"),
     ("put", "/incidents/1/postmortem"), ("post", "/incidents/1/action-items"),
     ("patch", "/action-items/1")],
)  # fmt: skip
def test_writing_needs_the_incident_scope(client, make_token, method, path):
    for scopes in [("read",), ("deploy",), ("ingest", "read", "deploy")]:
        response = send(client, method, path, make_token(*scopes), {"title": "x", "text": "x"})
        assert response.status_code == 403, scopes
    assert send(client, method, path, None).status_code == 401


@pytest.mark.parametrize(
    "path", ["/incidents", "/incidents/1", "/incidents/1/postmortem.md", "/action-items", "/dora"]
)
def test_reading_needs_the_read_scope(client, make_token, path):
    assert send(client, "get", path, make_token("incident")).status_code == 403
    assert send(client, "get", path, make_token("ingest")).status_code == 403
    assert send(client, "get", path, None).status_code == 401


def test_a_person_declares_an_incident(client, declared):
    incident = Incident.objects.get(pk=declared["id"])
    assert incident.opened_by == "token on-call bot" and incident.trigger_kind == "manual"
    assert incident.acknowledged_at == incident.detected_at
    assert declared["status"] == "open" and declared["severity"] == "sev1"
    assert [e["kind"] for e in declared["timeline"]] == ["status", "notification"]


def test_patch_changes_status_severity_title_and_owner(client, declared, incident_token):
    path = f"/incidents/{declared['id']}"
    body = {"status": "mitigated", "severity": "sev2", "title": "Checkout slow", "owner": "ana"}
    response = send(client, "patch", path, incident_token, body)
    assert response.status_code == 200
    out = response.json()
    assert (out["status"], out["severity"], out["title"], out["owner"]) == (
        "mitigated", "sev2", "Checkout slow", "ana",
    )  # fmt: skip
    assert out["mitigated_at"] is not None
    response = send(client, "patch", path, incident_token, {"status": "nonsense"})
    assert response.status_code == 422


def test_notes_go_on_the_timeline_with_their_author(client, declared, incident_token):
    response = send(client, "post", f"/incidents/{declared['id']}/notes", incident_token,
                    {"text": "Rolled back by hand"})  # fmt: skip
    assert response.status_code == 201
    note = Incident.objects.get().timeline.get(kind=EntryKind.NOTE)
    assert (note.summary, note.author) == ("Rolled back by hand", "token on-call bot")


def test_list_filters_and_puts_open_incidents_first(client, t0, read_token):
    old = Incident.objects.create(title="old", services=["search"], status=Status.RESOLVED,
                                  started_at=t0, detected_at=t0 + 9 * M, last_signal_at=t0,
                                  resolved_at=t0 + 20 * M)  # fmt: skip
    new = Incident.objects.create(title="new", services=["checkout"], started_at=t0,
                                  detected_at=t0, last_signal_at=t0)  # fmt: skip
    listed = send(client, "get", "/incidents", read_token).json()
    assert [i["id"] for i in listed] == [new.pk, old.pk]
    assert [i["id"] for i in send(client, "get", "/incidents?status=resolved", read_token).json()
            ] == [old.pk]  # fmt: skip
    assert [i["id"] for i in send(client, "get", "/incidents?service=checkout", read_token).json()
            ] == [new.pk]  # fmt: skip
    since = (t0 + 5 * M).isoformat().replace("+00:00", "Z")
    assert [i["id"] for i in send(client, "get", f"/incidents?since={since}", read_token).json()
            ] == [old.pk]  # fmt: skip


def test_the_detail_has_signals_suspects_impact_timeline_and_action_items(
    client, t0, read_token, incident_token
):
    from incidents import jobs

    slo = f.make_slo()
    bad = f.deploy("checkout", "2.0", t0 - 3 * M)
    f.suspect_of_alert(f.page_alert(slo, t0), bad)
    jobs.run_once(now=t0 + M)
    incident = Incident.objects.get()
    send(client, "post", f"/incidents/{incident.pk}/action-items", incident_token,
         {"title": "Alert on p95", "kind": "prevent", "owner": "team-pay"})  # fmt: skip
    out = send(client, "get", f"/incidents/{incident.pk}", read_token).json()
    assert [s["kind"] for s in out["signals"]] == ["alert"]
    assert out["suspects"][0]["deployment_id"] == bad.pk
    assert out["impact"]["slos"][0]["slo"] == "checkout-availability"
    assert out["action_items"][0]["title"] == "Alert on p95"
    items = send(client, "get", "/action-items", read_token).json()
    assert [i["incident_id"] for i in items] == [incident.pk]


def test_the_postmortem_exports_as_markdown_and_keeps_edits(client, declared, read_token,
                                                            incident_token):  # fmt: skip
    path = f"/incidents/{declared['id']}/postmortem"
    response = send(client, "get", path + ".md", read_token)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert response.content.decode().startswith("# Post-mortem: Checkout is slow")
    saved = send(client, "put", path, incident_token, {"markdown": "# Ours\n"}).json()
    assert saved == {"incident_id": declared["id"], "edited": True, "revisions": 2}
    assert send(client, "get", path + ".md", read_token).content.decode() == "# Ours\n"


def test_dora_refuses_periods_out_of_range(client, read_token):
    assert send(client, "get", "/dora?days=0", read_token).status_code == 422
    assert send(client, "get", "/dora?days=400", read_token).status_code == 422
    body = send(client, "get", "/dora?days=7", read_token).json()
    assert body["days"] == 7 and body["deployment_frequency"]["deploys"] == 0


def test_resolving_updates_the_impact_and_the_draft_at_once(client, declared, incident_token,
                                                            read_token):  # fmt: skip
    path = f"/incidents/{declared['id']}"
    incident = Incident.objects.get(pk=declared["id"])
    resolved_at = incident.detected_at + 7 * M
    body = {"status": "resolved", "resolved_at": resolved_at.isoformat()}
    assert send(client, "patch", path, incident_token, body).status_code == 200

    # Declared by a person: started = detected, so 7 minutes to resolve, by hand.
    incident.refresh_from_db()
    assert incident.impact["time_to_resolve_seconds"] == 7 * 60
    draft = send(client, "get", f"{path}/postmortem.md", read_token).content.decode()
    assert "**to resolve:** 7 min" in draft
