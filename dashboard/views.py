"""Dashboard pages and the JSON endpoints their scripts poll.

Each page renders its frame and first data on the server; its script then
polls the matching JSON endpoint and updates in place.
"""

from datetime import UTC, datetime, timedelta
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from dashboard import assets, queries, status
from deployments.models import Deployment, Verdict
from slo.models import SLO

ASSET_MAX_AGE = 365 * 24 * 3600
TRACE_SEARCH_RANGES = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}


def json_login_required(view):
    """Like login_required, but answers 401 so a polling script can react."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": "login required"}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
def asset(request: HttpRequest, name: str) -> FileResponse:
    path = assets.asset_path(name)
    if path is None:
        raise Http404("no such asset")
    response = FileResponse(path.open("rb"), content_type=assets.CONTENT_TYPES[path.suffix])
    response["Cache-Control"] = f"public, max-age={ASSET_MAX_AGE}, immutable"
    return response


# Overview


@require_GET
@login_required
def overview(request: HttpRequest) -> HttpResponse:
    data = status.overview(now=timezone.now())
    return render(request, "dashboard/overview.html", {"data": data})


@require_GET
@json_login_required
def overview_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(status.overview(now=timezone.now()))


# Service


def _time_range(request: HttpRequest) -> queries.TimeRange:
    name = request.GET.get("range", queries.DEFAULT_RANGE)
    return queries.RANGES.get(name, queries.RANGES[queries.DEFAULT_RANGE])


def _service_or_404(service: str) -> str:
    if not queries.service_exists(service):
        raise Http404("no spans stored for this service")
    return service


@require_GET
@login_required
def service(request: HttpRequest, service: str) -> HttpResponse:
    time_range = _time_range(request)
    data = status.service_page(
        _service_or_404(service), time_range, now=timezone.now()
    )
    return render(
        request,
        "dashboard/service.html",
        {"service": service, "range": time_range, "ranges": queries.RANGES, "data": data},
    )


@require_GET
@json_login_required
def service_json(request: HttpRequest, service: str) -> JsonResponse:
    data = status.service_page(
        _service_or_404(service), _time_range(request), now=timezone.now()
    )
    return JsonResponse(data)


# Traces


def _trace_filters(request: HttpRequest, *, now: datetime) -> queries.TraceFilters:
    params = request.GET
    start = _parse_time(params.get("start"))
    end = _parse_time(params.get("end")) or now
    if start is None or start >= end:
        start = end - TRACE_SEARCH_RANGES.get(params.get("last", ""), timedelta(hours=1))
    try:
        min_duration = float(params.get("min_ms") or "")
    except ValueError:
        min_duration = None
    return queries.TraceFilters(
        start=start,
        end=end,
        service=params.get("service", "").strip(),
        route=params.get("route", "").strip(),
        errors=params.get("errors") if params.get("errors") in ("only", "none") else "",
        min_duration_ms=min_duration,
    )


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def _trace_id(value: str) -> bytes | None:
    value = value.strip().lower()
    if len(value) != 32:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


@require_GET
@login_required
def traces(request: HttpRequest) -> HttpResponse:
    wanted = request.GET.get("trace_id", "").strip()
    if wanted:
        if _trace_id(wanted) is not None:
            return HttpResponseRedirect(reverse("dashboard:trace", args=[wanted.lower()]))
    now = timezone.now()
    filters = _trace_filters(request, now=now)
    return render(
        request,
        "dashboard/traces.html",
        {
            "filters": filters,
            "params": request.GET,
            "bad_trace_id": bool(wanted),
            "last_options": TRACE_SEARCH_RANGES,
            "services": queries.known_services(now=now),
            "results": queries.search_traces(filters),
        },
    )


@require_GET
@json_login_required
def traces_json(request: HttpRequest) -> JsonResponse:
    filters = _trace_filters(request, now=timezone.now())
    return JsonResponse(
        {
            "start": filters.start.isoformat(),
            "end": filters.end.isoformat(),
            "traces": queries.search_traces(filters),
        }
    )


@require_GET
@login_required
def trace(request: HttpRequest, trace_id: str) -> HttpResponse:
    raw_id = _trace_id(trace_id)
    waterfall = queries.trace_waterfall(raw_id) if raw_id else None
    if waterfall is None:
        raise Http404("no spans stored for this trace")
    return render(request, "dashboard/trace.html", {"trace": waterfall})


@require_GET
@json_login_required
def trace_json(request: HttpRequest, trace_id: str) -> JsonResponse:
    raw_id = _trace_id(trace_id)
    waterfall = queries.trace_waterfall(raw_id) if raw_id else None
    if waterfall is None:
        return JsonResponse({"error": "no spans stored for this trace"}, status=404)
    return JsonResponse({"span_count": waterfall["span_count"]})


# SLOs and budgets


@require_GET
@login_required
def budgets(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/budgets.html", {"data": status.budgets(now=timezone.now())})


@require_GET
@json_login_required
def budgets_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(status.budgets(now=timezone.now()))


@require_GET
@login_required
def slo(request: HttpRequest, slo_id: int) -> HttpResponse:
    objective = get_object_or_404(SLO, pk=slo_id)
    data = status.slo_page(objective, now=timezone.now())
    return render(request, "dashboard/slo.html", {"slo": objective, "data": data})


@require_GET
@json_login_required
def slo_json(request: HttpRequest, slo_id: int) -> JsonResponse:
    objective = get_object_or_404(SLO, pk=slo_id)
    return JsonResponse(status.slo_page(objective, now=timezone.now()))


# Deploys


def _deploy_filters(request: HttpRequest) -> dict:
    return {
        "service": request.GET.get("service", "").strip(),
        "verdict": request.GET.get("verdict", ""),
        "period": request.GET.get("period", "7d"),
    }


@require_GET
@login_required
def deploys(request: HttpRequest) -> HttpResponse:
    filters = _deploy_filters(request)
    return render(
        request,
        "dashboard/deploys.html",
        {
            "filters": filters,
            "services": status.deploy_services(),
            "verdicts": Verdict.values,
            "periods": status.DEPLOY_PERIODS,
            "data": status.deploys(now=timezone.now(), **filters),
        },
    )


@require_GET
@json_login_required
def deploys_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(status.deploys(now=timezone.now(), **_deploy_filters(request)))


@require_GET
@login_required
def deploy(request: HttpRequest, deploy_id: int) -> HttpResponse:
    deployment = get_object_or_404(Deployment, pk=deploy_id)
    data = status.deploy_page(deployment, now=timezone.now())
    return render(request, "dashboard/deploy.html", {"deploy": deployment, "data": data})


@require_GET
@json_login_required
def deploy_json(request: HttpRequest, deploy_id: int) -> JsonResponse:
    deployment = get_object_or_404(Deployment, pk=deploy_id)
    return JsonResponse(status.deploy_page(deployment, now=timezone.now()))
