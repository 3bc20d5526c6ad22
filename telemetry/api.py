"""Read API for stored spans, under /api/v1/ (scope: read)."""

from datetime import datetime

from django.db.models import Max, Sum
from django.http import Http404
from ninja import Router, Schema
from pydantic import field_serializer

from telemetry.auth import TokenAuth
from telemetry.models import ServiceDay, Span, TokenScope
from telemetry.otlp import hex_id

router = Router(tags=["telemetry"], auth=TokenAuth(TokenScope.READ))


class SpanOut(Schema):
    span_id: str
    parent_span_id: str | None
    service: str
    version: str
    name: str
    kind: int
    start_time: datetime
    duration_ms: float
    is_error: bool
    http_route: str
    http_status: int | None
    status_code: int
    status_message: str
    exception_type: str
    attributes: dict
    resource_attributes: dict
    events: list

    @field_serializer("start_time")
    def _keep_microseconds(self, start_time: datetime) -> str:
        # The default JSON encoder cuts datetimes to milliseconds; child spans need more.
        return start_time.isoformat()


class TraceOut(Schema):
    trace_id: str
    spans: list[SpanOut]


class ServiceOut(Schema):
    name: str
    span_count: int
    last_seen: datetime


@router.get("/traces/{trace_id}", response=TraceOut)
def get_trace(request, trace_id: str):
    try:
        raw_id = bytes.fromhex(trace_id)
    except ValueError:
        raise Http404("trace ids are 32 hex digits") from None
    spans = Span.objects.filter(trace_id=raw_id).order_by("start_time")
    span_list = [_span_out(span) for span in spans]
    if not span_list:
        raise Http404("no spans stored for this trace")
    return {"trace_id": trace_id.lower(), "spans": span_list}


@router.get("/services", response=list[ServiceOut])
def list_services(request):
    rows = (
        ServiceDay.objects.values("service")
        .annotate(span_count=Sum("span_count"), last_seen=Max("last_seen"))
        .order_by("service")
    )
    return [
        {"name": row["service"], "span_count": row["span_count"], "last_seen": row["last_seen"]}
        for row in rows
    ]


def _span_out(span: Span) -> dict:
    return {
        "span_id": hex_id(span.span_id),
        "parent_span_id": hex_id(span.parent_span_id) or None,
        "service": span.service,
        "version": span.service_version,
        "name": span.name,
        "kind": span.kind,
        "start_time": span.start_time,
        "duration_ms": span.duration_ms,
        "is_error": span.is_error,
        "http_route": span.http_route,
        "http_status": span.http_status,
        "status_code": span.status_code,
        "status_message": span.status_message,
        "exception_type": span.exception_type,
        "attributes": span.attributes,
        "resource_attributes": span.resource_attributes,
        "events": span.events,
    }
