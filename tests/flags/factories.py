"""Span rows carrying flag evaluations, for the flags tests."""

import json
from datetime import datetime

from telemetry.otlp import SPAN_COLUMNS
from tests.deployments.conftest import span_row  # noqa: F401  (re-exported)
from tests.telemetry.otlp_payloads import unix_nano

EVENTS = SPAN_COLUMNS.index("events")
SERVER, INTERNAL, CLIENT, CONSUMER = 2, 1, 3, 5


def evaluation_event(flag: str, at: datetime, *, variant: str = "", value=None, **extra) -> dict:
    attributes = {"feature_flag.key": flag, **extra}
    if variant:
        attributes["feature_flag.result.variant"] = variant
    if value is not None:
        attributes["feature_flag.result.value"] = value
    return {"name": "feature_flag.evaluation", "time_unix_nano": unix_nano(at),
            "attributes": attributes}  # fmt: skip


def with_events(row: tuple, events: list[dict]) -> tuple:
    return row[:EVENTS] + (json.dumps(events),) + row[EVENTS + 1 :]
