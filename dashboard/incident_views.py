"""The Incidents, incident and Delivery pages, and the forms people act through.

Forms post back to the page, which redirects (POST/redirect/GET). Every
change goes through incidents.operations, postmortem or actions; the person
acting is the logged-in user.
"""

from datetime import UTC, datetime

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from dashboard import incident_pages
from dashboard.views import json_login_required
from incidents import actions, operations, postmortem
from incidents.models import ActionKind, ActionStatus, Incident, Severity


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


@require_GET
@login_required
def incidents(request: HttpRequest) -> HttpResponse:
    data = incident_pages.incidents_page(now=timezone.now())
    return render(request, "dashboard/incidents.html",
                  {"data": data, "severities": Severity.choices})  # fmt: skip


@require_GET
@json_login_required
def incidents_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(incident_pages.incidents_page(now=timezone.now()))


@require_GET
@json_login_required
def open_incidents_json(request: HttpRequest) -> JsonResponse:
    """What the open incidents banner polls: the active incidents, newest first."""
    now = timezone.now()
    return JsonResponse({"generated_at": now.isoformat(),
                         "incidents": incident_pages.open_incidents(now=now)})  # fmt: skip


@login_required
@require_POST
def declare(request: HttpRequest) -> HttpResponse:
    title = request.POST.get("title", "").strip()[:300]
    if not title:
        return HttpResponseRedirect(reverse("dashboard:incidents"))
    services = [s.strip() for s in request.POST.get("services", "").split(",") if s.strip()]
    severity = request.POST.get("severity")
    incident = operations.open_manually(
        title=title, services=services[:50],
        severity=severity if severity in Severity.values else Severity.SEV2,
        actor=_actor(request), now=timezone.now(),
    )  # fmt: skip
    return HttpResponseRedirect(reverse("dashboard:incident", args=[incident.pk]))


@require_GET
@login_required
def incident(request: HttpRequest, incident_id: int) -> HttpResponse:
    return _incident_page(request, get_object_or_404(Incident, pk=incident_id))


def _incident_page(request, found: Incident, *, preview: str | None = None, error: str = ""):
    pm = postmortem.refresh_draft(found, now=timezone.now())
    text = pm.markdown if preview is None else preview
    context = {
        "incident": found,
        "data": incident_pages.incident_page(found, now=timezone.now()),
        "postmortem": pm,
        "draft": text,
        "previewing": preview is not None,
        "rendered": postmortem.as_html(text, heading_offset=1),
        "revisions": pm.revisions.all()[:20],
        "severities": Severity.choices,
        "action_kinds": ActionKind.choices,
        "action_statuses": ActionStatus.choices,
        "error": error,
    }
    return render(request, "dashboard/incident.html", context)


@require_GET
@json_login_required
def incident_json(request: HttpRequest, incident_id: int) -> JsonResponse:
    found = get_object_or_404(Incident, pk=incident_id)
    return JsonResponse(incident_pages.incident_page(found, now=timezone.now()))


def _back(found: Incident, anchor: str = "") -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("dashboard:incident", args=[found.pk]) + anchor)


def _time(value: str | None) -> datetime | None:
    """A datetime-local field, read as UTC (the page says so)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return None


@login_required
@require_POST
def change(request: HttpRequest, incident_id: int) -> HttpResponse:
    """Confirm a proposal, override a time, reopen, or change severity, title and owner."""
    found = get_object_or_404(Incident, pk=incident_id)
    changes = {
        "status": request.POST.get("status") or None,
        "severity": request.POST.get("severity") or None,
        "title": (request.POST.get("title") or "").strip()[:300] or None,
        "owner": (request.POST.get("owner") or "")[:150] if "owner" in request.POST else None,
        "mitigated_at": _time(request.POST.get("mitigated_at")),
        "resolved_at": _time(request.POST.get("resolved_at")),
    }
    if changes["status"] not in (None, "open", "mitigated", "resolved"):
        changes["status"] = None
    if changes["severity"] not in (None, *Severity.values):
        changes["severity"] = None
    try:
        operations.update(found, changes, actor=_actor(request), now=timezone.now())
    except operations.InvalidChange as exc:
        return _incident_page(request, found, error=str(exc))
    return _back(found)


@login_required
@require_POST
def note(request: HttpRequest, incident_id: int) -> HttpResponse:
    found = get_object_or_404(Incident, pk=incident_id)
    text = request.POST.get("text", "").strip()
    if text:
        operations.add_note(found, text, actor=_actor(request), now=timezone.now())
    return _back(found, "#timeline")


@login_required
@require_POST
def edit_postmortem(request: HttpRequest, incident_id: int) -> HttpResponse:
    found = get_object_or_404(Incident, pk=incident_id)
    text = request.POST.get("markdown", "")[:200_000]
    if request.POST.get("action") == "preview":
        return _incident_page(request, found, preview=text)
    if text.strip():
        postmortem.save_edit(found, text, actor=_actor(request), now=timezone.now())
    return _back(found, "#postmortem")


@require_GET
@login_required
def postmortem_markdown(request: HttpRequest, incident_id: int) -> HttpResponse:
    found = get_object_or_404(Incident, pk=incident_id)
    response = HttpResponse(
        postmortem.refresh_draft(found, now=timezone.now()).markdown,
        content_type="text/markdown; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="incident-{found.pk}.md"'
    return response


@login_required
@require_POST
def action_item(request: HttpRequest, incident_id: int) -> HttpResponse:
    found = get_object_or_404(Incident, pk=incident_id)
    item_id = request.POST.get("item")
    status = request.POST.get("status")
    if item_id:
        item = get_object_or_404(found.action_items, pk=item_id)
        if status in ActionStatus.values:
            actions.change(item, {"status": status})
        return _back(found, "#action-items")
    title = request.POST.get("title", "").strip()[:300]
    kind = request.POST.get("kind")
    if title:
        fields = {
            "title": title, "kind": kind if kind in ActionKind.values else ActionKind.PREVENT,
            "owner": request.POST.get("owner", "")[:150],
            "link": request.POST.get("link", "")[:1000],
        }  # fmt: skip
        actions.add(found, fields, now=timezone.now())
    return _back(found, "#action-items")


# Delivery (DORA)


def _delivery_filters(request: HttpRequest) -> dict:
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        days = 30
    return {
        "days": days if days in incident_pages.PERIODS else 30,
        "service": request.GET.get("service") or None,
        "environment": request.GET.get("environment") or None,
    }


@require_GET
@login_required
def delivery(request: HttpRequest) -> HttpResponse:
    filters = _delivery_filters(request)
    data = incident_pages.delivery_page(now=timezone.now(), **filters)
    context = {"data": data, "filters": filters, "periods": incident_pages.PERIODS}
    return render(request, "dashboard/delivery.html", context)


@require_GET
@json_login_required
def delivery_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        incident_pages.delivery_page(now=timezone.now(), **_delivery_filters(request))
    )
