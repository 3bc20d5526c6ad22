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

from dashboard import assets, figures, pages, traffic
from dashboard import deploys as deploy_data
from dashboard import flags as flag_data
from dashboard import traces as trace_data
from deployments.models import Deployment, Verdict
from slo.models import SLO
from telemetry import spans

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


def _overview_window(request: HttpRequest) -> str:
    window = request.GET.get("window", "1h")
    return window if window in traffic.OVERVIEW_WINDOWS else "1h"


@require_GET
@login_required
def overview(request: HttpRequest) -> HttpResponse:
    data = pages.overview(now=timezone.now(), window=_overview_window(request))
    return render(request, "dashboard/overview.html", {"data": data})


@require_GET
@json_login_required
def overview_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(pages.overview(now=timezone.now(), window=_overview_window(request)))


# Service


def _time_range(request: HttpRequest, service: str, *, now: datetime) -> figures.TimeRange:
    """The range asked for, else the shortest that holds the service's data."""
    name = request.GET.get("range", "")
    if name not in figures.RANGES:
        name = pages.default_range(service, now=now)
    return figures.RANGES[name]


def _service_or_404(service: str) -> str:
    if not spans.has_spans(service):
        raise Http404("no spans stored for this service")
    return service


@require_GET
@login_required
def service(request: HttpRequest, service: str) -> HttpResponse:
    now = timezone.now()
    time_range = _time_range(request, _service_or_404(service), now=now)
    data = pages.service_page(service, time_range, now=now)
    return render(
        request,
        "dashboard/service.html",
        {"service": service, "range": time_range, "ranges": figures.RANGES, "data": data},
    )


@require_GET
@json_login_required
def service_json(request: HttpRequest, service: str) -> JsonResponse:
    now = timezone.now()
    time_range = _time_range(request, _service_or_404(service), now=now)
    return JsonResponse(pages.service_page(service, time_range, now=now))


# Traces


def _trace_filters(request: HttpRequest, *, now: datetime) -> trace_data.TraceSearch:
    params = request.GET
    start = _parse_time(params.get("start"))
    end = _parse_time(params.get("end")) or now
    if start is None or start >= end:
        start = end - TRACE_SEARCH_RANGES.get(params.get("last", ""), timedelta(hours=1))
    try:
        min_duration = float(params.get("min_ms") or "")
    except ValueError:
        min_duration = None
    return trace_data.TraceSearch(
        start=start,
        end=end,
        service=params.get("service", "").strip(),
        route=params.get("route", "").strip(),
        version=params.get("version", "").strip(),
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
    results = trace_data.search(filters, offset=_offset(request))
    return render(
        request,
        "dashboard/traces.html",
        {
            "filters": filters,
            "params": request.GET,
            "bad_trace_id": bool(wanted),
            "last_options": TRACE_SEARCH_RANGES,
            "services": traffic.known_services(now=now),
            "results": results,
            "next_page": _page_query(request, filters, results["next_offset"]),
            "first_page": _page_query(request, filters, 0),
        },
    )


def _offset(request: HttpRequest) -> int:
    try:
        return max(int(request.GET.get("offset", "0")), 0)
    except ValueError:
        return 0


def _page_query(request: HttpRequest, filters, offset: int | None) -> str | None:
    """The query string of another page: the same search, pinned to its time range."""
    if offset is None:
        return None
    query = request.GET.copy()
    query["start"], query["end"] = filters.start.isoformat(), filters.end.isoformat()
    query["offset"] = str(offset)
    return query.urlencode()


@require_GET
@json_login_required
def traces_json(request: HttpRequest) -> JsonResponse:
    filters = _trace_filters(request, now=timezone.now())
    return JsonResponse(
        {
            "start": filters.start.isoformat(),
            "end": filters.end.isoformat(),
            **trace_data.search(filters, offset=_offset(request)),
        }
    )


@require_GET
@login_required
def trace(request: HttpRequest, trace_id: str) -> HttpResponse:
    raw_id = _trace_id(trace_id)
    waterfall = trace_data.waterfall(raw_id) if raw_id else None
    if waterfall is None:
        raise Http404("no spans stored for this trace")
    return render(request, "dashboard/trace.html", {"trace": waterfall})


@require_GET
@json_login_required
def trace_json(request: HttpRequest, trace_id: str) -> JsonResponse:
    raw_id = _trace_id(trace_id)
    waterfall = trace_data.waterfall(raw_id) if raw_id else None
    if waterfall is None:
        return JsonResponse({"error": "no spans stored for this trace"}, status=404)
    return JsonResponse({"span_count": waterfall["span_count"]})


# SLOs and budgets


@require_GET
@login_required
def budgets(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/budgets.html", {"data": pages.budgets(now=timezone.now())})


@require_GET
@json_login_required
def budgets_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(pages.budgets(now=timezone.now()))


@require_GET
@login_required
def slo(request: HttpRequest, slo_id: int) -> HttpResponse:
    objective = get_object_or_404(SLO, pk=slo_id)
    data = pages.slo_page(objective, now=timezone.now())
    return render(
        request,
        "dashboard/slo.html",
        {"slo": objective, "data": data, "chart_ranges": ["15m", "1h", "6h", "1d", "7d", "all"]},
    )


@require_GET
@json_login_required
def slo_json(request: HttpRequest, slo_id: int) -> JsonResponse:
    objective = get_object_or_404(SLO, pk=slo_id)
    return JsonResponse(pages.slo_page(objective, now=timezone.now()))


# Deploys


def _deploy_filters(request: HttpRequest) -> dict:
    return {
        "service": request.GET.get("service", "").strip(),
        "verdict": request.GET.get("verdict", ""),
        "period": request.GET.get("period", ""),
        "kind": kind if (kind := request.GET.get("kind", "")) in deploy_data.CHANGE_KINDS else "",
    }


@require_GET
@login_required
def deploys(request: HttpRequest) -> HttpResponse:
    filters = _deploy_filters(request)
    data = pages.deploys_page(now=timezone.now(), **filters)
    return render(
        request,
        "dashboard/deploys.html",
        {
            "filters": {**filters, "period": data["period"]},
            "services": deploy_data.deploy_services(),
            "verdicts": Verdict.values,
            "periods": deploy_data.DEPLOY_PERIODS,
            "kinds": deploy_data.CHANGE_KINDS,
            "data": data,
        },
    )


@require_GET
@json_login_required
def deploys_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(pages.deploys_page(now=timezone.now(), **_deploy_filters(request)))


@require_GET
@login_required
def deploy(request: HttpRequest, deploy_id: int) -> HttpResponse:
    deployment = get_object_or_404(Deployment, pk=deploy_id)
    data = pages.deploy_page(deployment, now=timezone.now())
    return render(request, "dashboard/deploy.html", {"deploy": deployment, "data": data})


@require_GET
@json_login_required
def deploy_json(request: HttpRequest, deploy_id: int) -> JsonResponse:
    deployment = get_object_or_404(Deployment, pk=deploy_id)
    return JsonResponse(pages.deploy_page(deployment, now=timezone.now()))


# Flags


@require_GET
@login_required
def flags(request: HttpRequest) -> HttpResponse:
    data = flag_data.flags_page(now=timezone.now())
    return render(request, "dashboard/flags.html", {"data": data})


@require_GET
@json_login_required
def flags_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(flag_data.flags_page(now=timezone.now()))


def _flag_page(request: HttpRequest, flag: str) -> dict:
    now = timezone.now()
    if not flag_data.known_flag(flag, now=now):
        raise Http404("no evaluation or change of this flag")
    name = request.GET.get("range", "")
    if name not in flag_data.FLAG_RANGES:
        name = flag_data.default_range(flag, now=now)
    try:
        change_id = int(request.GET.get("change", ""))
    except ValueError:
        change_id = None
    return flag_data.flag_page(
        flag, flag_data.FLAG_RANGES[name], now=now, service=request.GET.get("service", ""),
        change_id=change_id,
    )  # fmt: skip


@require_GET
@login_required
def flag(request: HttpRequest, flag: str) -> HttpResponse:
    data = _flag_page(request, flag)
    return render(
        request, "dashboard/flag.html",
        {"flag": flag, "data": data, "ranges": flag_data.FLAG_RANGES},
    )  # fmt: skip


@require_GET
@json_login_required
def flag_json(request: HttpRequest, flag: str) -> JsonResponse:
    try:
        return JsonResponse(_flag_page(request, flag))
    except Http404 as exc:
        return JsonResponse({"error": str(exc)}, status=404)
