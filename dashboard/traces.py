"""Trace search results and the waterfall of one trace, shaped for the trace pages.

Spans are read only through telemetry.spans, and the flags each request
evaluated through telemetry.flag_store; this module orders and places them.
"""

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from dashboard import figures
from dashboard.deploys import flag_url
from telemetry import flag_store, spans
from telemetry.demo import is_demo
from telemetry.models import Span, SpanKind
from telemetry.otlp import hex_id

PAGE_SIZE = 50
# Matching spans read per page: a trace has several, and a page lists traces.
SPANS_PER_PAGE = PAGE_SIZE * 4
# Evaluations are timed by their own clock, which may differ a little from the spans'.
EVALUATION_MARGIN = timedelta(minutes=5)
SERVICE_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#9d755d", "#e45756")
TraceSearch = spans.TraceSearch


def search(filters: TraceSearch, *, offset: int = 0) -> dict:
    """The newest traces with a span matching the filters, one row per trace, a page at a time.

    Pages are cut by matching spans: `offset` counts the matching spans that
    earlier pages used, and next_offset is where the next page starts (None
    on the last page), so no trace is skipped between two pages.
    """
    offset = max(offset, 0)
    matches = spans.search_trace_rows(filters, limit=SPANS_PER_PAGE, offset=offset)
    first_match: dict[bytes, tuple] = {}
    used = 0
    for row in matches:
        trace_id = bytes(row[0])
        if trace_id not in first_match:
            if len(first_match) == PAGE_SIZE:
                break
            first_match[trace_id] = row
        used += 1
    more = used < len(matches) or len(matches) == SPANS_PER_PAGE
    summaries = spans.trace_summaries(list(first_match), filters.start, filters.end)
    return {
        "offset": offset,
        "next_offset": offset + used if more else None,
        "traces": [
            _row(trace_id, row, summaries.get(trace_id, {}))
            for trace_id, row in first_match.items()
        ],
    }


def _row(trace_id: bytes, match: tuple, summary: dict) -> dict:
    _, start_time, service, name, route, duration_us, is_error, http_status = match
    return {
        "trace_id": hex_id(trace_id),
        "start_time": start_time.isoformat(),
        "service": service,
        "demo": is_demo(service),
        "name": name,
        "route": route,
        "duration_ms": figures.ms(duration_us),
        "is_error": is_error,
        "http_status": http_status,
        **summary,
    }


def waterfall(trace_id: bytes) -> dict | None:
    """The spans of one trace in tree order, placed on a shared time axis."""
    trace_spans = spans.trace(trace_id)
    if not trace_spans:
        return None
    trace_start = min(span.start_time for span in trace_spans)
    trace_end = max(
        span.start_time + timedelta(microseconds=span.duration_us) for span in trace_spans
    )
    total_us = max((trace_end - trace_start) / timedelta(microseconds=1), 1)
    services = sorted({span.service for span in trace_spans})
    colors = {name: SERVICE_COLORS[i % len(SERVICE_COLORS)] for i, name in enumerate(services)}
    flags = _flags(trace_id, trace_spans, trace_start, trace_end)
    by_request = defaultdict(list)
    for row in flags:
        by_request[row["request_span_id"]].append(row)
    return {
        "trace_id": hex_id(trace_id),
        "start_time": trace_start,
        "duration_ms": round(total_us / 1000, 3),
        "span_count": len(trace_spans),
        "services": [
            {"name": name, "color": colors[name], "demo": is_demo(name)} for name in services
        ],
        "error_count": sum(span.is_error for span in trace_spans),
        "flags": flags,
        "spans": [
            {**_span_row(span, depth, trace_start, total_us, colors[span.service]),
             "flags": by_request.get(hex_id(span.span_id), [])}
            for span, depth in _tree_order(trace_spans)
        ],
    }  # fmt: skip


def _flags(trace_id: bytes, trace_spans: list[Span], start: datetime, end: datetime) -> list:
    """The flags and variants each request of the trace evaluated, in time order."""
    names = {span.span_id: span for span in trace_spans}
    rows = []
    evaluations = flag_store.trace_evaluations(
        trace_id, start - EVALUATION_MARGIN, end + EVALUATION_MARGIN
    )
    for evaluation in evaluations:
        request = names.get(evaluation.request_span_id)
        rows.append({
            "flag": evaluation.flag,
            "flag_url": flag_url(evaluation.flag),
            "cohort": evaluation.cohort,
            "variant": evaluation.variant,
            "value": evaluation.value,
            "reason": evaluation.reason,
            "provider": evaluation.provider,
            "error_type": evaluation.error_type,
            "service": evaluation.service,
            "span_id": hex_id(evaluation.span_id),
            "request_span_id": hex_id(evaluation.request_span_id),
            "request_name": request.name if request else "",
        })  # fmt: skip
    return rows


def _span_row(span: Span, depth: int, trace_start: datetime, total_us: float, color: str) -> dict:
    offset_us = (span.start_time - trace_start) / timedelta(microseconds=1)
    return {
        "span_id": hex_id(span.span_id),
        "parent_span_id": hex_id(span.parent_span_id),
        "depth": depth,
        "service": span.service,
        "color": color,
        "version": span.service_version,
        "name": span.name,
        "kind": SpanKind(span.kind).label if span.kind in SpanKind.values else "",
        "start_time": span.start_time,
        "duration_ms": span.duration_ms,
        "offset_pct": round(100 * offset_us / total_us, 3),
        "width_pct": max(round(100 * span.duration_us / total_us, 3), 0.2),
        # The duration label sits right of the bar, or left of it near the end.
        "label_left_pct": round(100 * (offset_us + span.duration_us) / total_us, 3),
        "label_right_pct": round(100 - 100 * offset_us / total_us, 3),
        "is_error": span.is_error,
        "status_message": span.status_message,
        "http_method": span.http_method,
        "http_route": span.http_route,
        "http_status": span.http_status,
        "exception_type": span.exception_type,
        "attributes": _flat_items(span.attributes),
        "resource_attributes": _flat_items(span.resource_attributes),
        "events": [_event(event, span.start_time) for event in span.events or []],
    }


def _tree_order(trace_spans: list[Span]) -> list[tuple[Span, int]]:
    """Depth-first, children by start time; spans whose parent is missing are roots."""
    ids = {span.span_id for span in trace_spans}
    children: dict[bytes | None, list[Span]] = defaultdict(list)
    for span in trace_spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children[parent].append(span)
    ordered: list[tuple[Span, int]] = []
    stack = [(span, 0) for span in reversed(children[None])]
    while stack:
        span, depth = stack.pop()
        ordered.append((span, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    return ordered


def _flat_items(attributes) -> list[tuple[str, str]]:
    if not isinstance(attributes, dict):
        return []
    return sorted((str(key), _text(value)) for key, value in attributes.items())


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _event(event, span_start: datetime) -> dict:
    event = event if isinstance(event, dict) else {"name": _text(event)}
    try:
        at = datetime.fromtimestamp(int(event.get("time_unix_nano")) / 1e9, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        at = None
    return {
        "name": _text(event.get("name", "")),
        "time": at,
        "offset_ms": round((at - span_start) / timedelta(milliseconds=1), 3) if at else None,
        "attributes": _flat_items(event.get("attributes") or {}),
    }
