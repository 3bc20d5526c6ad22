"""Span rows carrying flag evaluations, for the flags tests."""

from datetime import datetime

import orjson

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
    # Written as telemetry.otlp writes them.
    return row[:EVENTS] + (orjson.dumps(events).decode(),) + row[EVENTS + 1 :]


def evaluation_traffic(
    flag: str, start: datetime, *, minutes: int, per_minute: int, shares: dict[str, float],
    service: str = "web", seed: int = 1, error_rates: dict[str, float] | None = None,
) -> list[tuple]:
    """Server spans at a steady rate, each evaluating the flag once; cohorts drawn by share."""
    import random
    from datetime import timedelta

    rng = random.Random(seed)
    cohorts, weights = zip(*sorted(shares.items()), strict=True)
    rows = []
    for index in range(minutes * per_minute):
        at = start + timedelta(seconds=index * 60 / per_minute)
        variant = rng.choices(cohorts, weights)[0]
        error = rng.random() < (error_rates or {}).get(variant, 0.0)
        row = span_row(service=service, version="v1", start=at, error=error, rng=rng)
        rows.append(with_events(row, [evaluation_event(flag, at, variant=variant)]))
    return rows
