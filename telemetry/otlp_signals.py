"""OTLP metrics and logs: counting what arrives, and picking out flag evaluations.

Pure code with no Django imports. Monoenv stores no metrics, and of logs
only the feature-flag evaluations (decoded by telemetry/flag_events.py,
stored by telemetry/ingest.py): the receivers decode both signals (bad data
still gets 400), count what they do not keep and answer success, so that
stock SDKs, which export both by default, log no error. flag_evaluations()
yields the log records that are `feature_flag.evaluation` events, however the
sender spelled the event name.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from telemetry import otlp

# Where senders older than LogRecord.event_name (opentelemetry-proto 1.5) put it.
EVENT_NAME_ATTRIBUTE = "event.name"
_DATA_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def count_data_points(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind in _DATA_KINDS:
                    total += len(getattr(metric, kind).data_points)
    return total


def count_log_records(request: ExportLogsServiceRequest) -> int:
    return sum(
        len(scope_logs.log_records)
        for resource_logs in request.resource_logs
        for scope_logs in resource_logs.scope_logs
    )


@dataclass(frozen=True)
class FlagEvaluationRecord:
    """One `feature_flag.evaluation` log record with the resource that sent it."""

    resource_attributes: tuple[KeyValue, ...]
    record: LogRecord


def event_name(record: LogRecord) -> str:
    """The record's event name: LogRecord.event_name, else the `event.name` attribute."""
    if record.event_name:
        return record.event_name
    for attribute in record.attributes:
        if attribute.key == EVENT_NAME_ATTRIBUTE:
            return attribute.value.string_value
    return ""


def flag_evaluations(request: ExportLogsServiceRequest) -> Iterator[FlagEvaluationRecord]:
    """The feature-flag evaluation events in a logs export, in the order sent."""
    for resource_logs in request.resource_logs:
        resource = tuple(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if event_name(record) in otlp.FLAG_EVENT_NAMES:
                    yield FlagEvaluationRecord(resource, record)


def metrics_response() -> ExportMetricsServiceResponse:
    return ExportMetricsServiceResponse()


def logs_response() -> ExportLogsServiceResponse:
    return ExportLogsServiceResponse()
