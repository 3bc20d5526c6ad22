"""The Incidents, incident and Delivery pages, and the forms people act through."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from incidents import delivery, jobs
from incidents.models import ActionItem, EntryKind, Incident, PostMortem, Status
from tests.incidents import factories as f

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)
XSS = '<script>alert(1)</script><img src=x onerror=alert(2)>'


@pytest.fixture
def oncall(client):
    client.force_login(User.objects.create_user("oncall", password="a-long-test-password"))
    return client


@pytest.fixture
def incident(t0):
    slo = f.make_slo()
    f.slo_minutes(slo, t0 - 30 * M, 30, bad=0)
    f.slo_minutes(slo, t0, 30, bad=20)
    f.slo_minutes(slo, t0 + 30 * M, 60, bad=0)
    bad = f.deploy(XSS, "2.0", t0 - 2 * M)
    f.deploy("checkout", "1.9", t0 + 30 * M, rollback_of=bad)
    f.suspect_of_alert(f.page_alert(slo, t0 + 8 * M, resolved_at=t0 + 40 * M), bad)
    jobs.run_once(now=t0 + 9 * M)
    jobs.run_once(now=t0 + 70 * M)
    found = Incident.objects.get()
    found.title = XSS
    found.save()
    return found


PAGES = ["dashboard:incidents", "dashboard:incidents-json", "dashboard:delivery",
         "dashboard:delivery-json", "dashboard:open-incidents-json"]  # fmt: skip


@pytest.mark.parametrize("name", PAGES)
def test_pages_need_a_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code in (302, 401)


def test_the_incidents_page_lists_open_incidents_first(oncall, incident, t0):
    Incident.objects.create(title="old", status=Status.RESOLVED, started_at=t0 - 5 * M,
                            detected_at=t0 - 5 * M, last_signal_at=t0 - 5 * M,
                            resolved_at=t0)  # fmt: skip
    data = oncall.get(reverse("dashboard:incidents-json")).json()
    assert [row["status"] for row in data["incidents"]] == ["open", "resolved"]
    assert data["incidents"][0]["proposal"] == "resolved"
    page = oncall.get(reverse("dashboard:incidents")).content.decode()
    assert "<script>alert(1)" not in page


def test_the_incident_page_escapes_and_renders_the_postmortem_safely(oncall, incident):
    page = oncall.get(reverse("dashboard:incident", args=[incident.pk])).content.decode()
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "Monoenv proposes resolved" in page
    assert '<h3>Summary</h3>' in page  # the rendered post-mortem, under the page's own h1
    data = oncall.get(reverse("dashboard:incident-json", args=[incident.pk])).json()
    assert [c["kind"] for c in data["changes"]] == ["deploy", "rollback"]
    assert data["impact"]["slos"][0]["burn"]


def test_confirming_the_proposal_resolves_with_the_proposed_time(oncall, incident, t0):
    oncall.post(reverse("dashboard:incident-change", args=[incident.pk]), {"status": "resolved"})
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED and incident.resolved_at == t0 + 40 * M
    assert incident.mitigated_at == t0 + 30 * M
    status = incident.timeline.filter(kind=EntryKind.STATUS).last()
    assert status.author == "oncall"


def test_a_note_an_action_item_and_a_postmortem_edit(oncall, incident):
    args = [incident.pk]
    oncall.post(reverse("dashboard:incident-note", args=args), {"text": "checking the rollback"})
    oncall.post(reverse("dashboard:incident-action-item", args=args),
                {"title": "Canary the deploy", "kind": "prevent", "owner": "team-pay"})  # fmt: skip
    item = ActionItem.objects.get()
    oncall.post(reverse("dashboard:incident-action-item", args=args),
                {"item": item.pk, "status": "done"})  # fmt: skip
    assert ActionItem.objects.get().status == "done"
    preview = oncall.post(reverse("dashboard:incident-postmortem", args=args),
                          {"markdown": "# Mine\n\n" + XSS, "action": "preview"})  # fmt: skip
    html = preview.content.decode()
    assert "<h2>Mine</h2>" in html and "<script>alert(1)" not in html
    assert not PostMortem.objects.get().edited
    oncall.post(reverse("dashboard:incident-postmortem", args=args),
                {"markdown": "# Mine", "action": "save"})  # fmt: skip
    assert PostMortem.objects.get().markdown == "# Mine"
    download = oncall.get(reverse("dashboard:incident-postmortem-md", args=args))
    assert download.content == b"# Mine" and download["Content-Disposition"].startswith("attach")
    assert incident.timeline.filter(kind=EntryKind.NOTE).get().author == "oncall"


def test_declaring_an_incident_from_the_dashboard(oncall):
    response = oncall.post(reverse("dashboard:incident-declare"),
                           {"title": "Search is down", "services": "search, api",
                            "severity": "sev1"})  # fmt: skip
    incident = Incident.objects.get()
    assert response["Location"] == reverse("dashboard:incident", args=[incident.pk])
    assert (incident.services, incident.severity, incident.opened_by) == (
        ["search", "api"], "sev1", "oncall",
    )  # fmt: skip


def test_the_delivery_page_and_the_overview_line(oncall, incident):
    delivery.rebuild_all()
    data = oncall.get(reverse("dashboard:delivery-json") + "?days=7").json()
    assert data["metrics"]["days"] == 7
    assert {row["service"] for row in data["services"]} == {XSS, "checkout"}
    page = oncall.get(reverse("dashboard:delivery")).content.decode()
    assert "Accelerate State of DevOps Report 2024" in page
    overview = oncall.get(reverse("dashboard:overview")).content.decode()
    assert 'id="open-incidents"' in overview and 'id="dora-line"' in overview
    assert "<script>alert(1)" not in overview


def test_the_banner_polls_the_active_incidents_only(oncall, incident, t0):
    Incident.objects.create(title="old", status=Status.RESOLVED, started_at=t0 - 5 * M,
                            detected_at=t0 - 5 * M, last_signal_at=t0 - 5 * M,
                            resolved_at=t0)  # fmt: skip
    data = oncall.get(reverse("dashboard:open-incidents-json")).json()
    assert [(row["id"], row["title"]) for row in data["incidents"]] == [(incident.pk, XSS)]
    overview = oncall.get(reverse("dashboard:overview")).content.decode()
    assert f'data-url="{reverse("dashboard:open-incidents-json")}"' in overview


def test_the_on_call_budgets_page_shows_open_incidents_first(oncall, incident):
    page = oncall.get(reverse("dashboard:budgets")).content.decode()
    assert page.index('id="open-incidents"') < page.index('id="slos"')
    assert f"Incident #{incident.pk}" in page
