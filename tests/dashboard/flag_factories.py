"""Flag evaluations and changes for the dashboard's flag tests, on top of build_world().

Evaluations go in as the flags brief says: spans stored, their evaluations
stored with telemetry.flag_store.store_evaluations(), then attributed.
"""

import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from flags.models import FlagChange, FlagFinding, FlagVerdictRecord
from slo import minutes as slo_minutes
from telemetry import flag_events, flag_store
from tests.dashboard.factories import XSS, World, store
from tests.dashboard.factories import span_row as plain_span_row
from tests.flags.factories import with_events
from tests.telemetry.otlp_payloads import unix_nano

FLAG = "new-checkout"


def evaluation(flag: str, at: datetime, variant: str) -> dict:
    return {"name": "feature_flag.evaluation", "time_unix_nano": unix_nano(at),
            "attributes": {"feature_flag.key": flag, "feature_flag.result.variant": variant,
                           "feature_flag.result.reason": "TARGETING_MATCH"}}  # fmt: skip


def span_row(start: datetime, *, events: list[dict], **fields) -> tuple:
    """A span whose events are written compactly, as telemetry.otlp writes them."""
    return with_events(plain_span_row(start, **fields), events)


def store_evaluating(rows: list[tuple]) -> None:
    """Spans, then the evaluations their events carry, attributed to their requests."""
    store(rows)
    flag_store.store_evaluations(flag_events.from_span_rows(rows))
    flag_store.attribute_pending(now=timezone.now() + timedelta(seconds=1))


@dataclass
class FlagWorld:
    change: FlagChange
    hostile_change: FlagChange
    trace_id: str


def checkout_rows(start: datetime, change_at: datetime) -> list[tuple]:
    """An hour of checkout 1.0.0 at 6 req/min evaluating new-checkout.

    Before the change every request is `off`; after it, one in three is `on`,
    and every other `on` request fails with FlagBoom, an error `off` never has.
    """
    rows = []
    for minute in range(60):
        for index in range(6):
            at = start + timedelta(minutes=minute, seconds=10 * index)
            on = at >= change_at and index % 3 == 0
            error = on and index == 0
            rows.append(span_row(
                at, service="checkout", route="/api/pay", error=error,
                exception_type="FlagBoom" if error else "",
                duration_us=60_000 if on else 20_000,
                events=[evaluation(FLAG, at, "on" if on else "off")],
            ))  # fmt: skip
    return rows


def build_flag_world(world: World) -> FlagWorld:
    now = world.now
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=62)
    change_at = start + timedelta(minutes=30)
    rows = checkout_rows(start, change_at)
    # A hostile flag key and variant on payments, and one request that evaluated both flags.
    rows += [
        span_row(now - timedelta(minutes=10, seconds=i), service="payments", route="/charge",
                 events=[evaluation(XSS, now - timedelta(minutes=10, seconds=i), XSS)])
        for i in range(6)
    ]  # fmt: skip
    trace_id, at = os.urandom(16), now - timedelta(minutes=4)
    both = [evaluation(FLAG, at, "on"), evaluation(XSS, at, XSS)]
    rows.append(span_row(at, service="checkout", route="/api/pay", trace_id=trace_id, events=both))
    store_evaluating(rows)
    slo_minutes.backfill(world.slo, now=now)
    change = FlagChange.objects.create(
        flag=FLAG, services=["checkout"], at=change_at, actor="ada", source="api",
        control="off", control_reason="the variant named off", verdict="fail",
        verdict_reason="checkout, new-checkout=on: error rate rose from 0% to 50%.",
        shares_before={"off": 1.0}, shares_after={"off": 0.667, "on": 0.333},
    )  # fmt: skip
    record = FlagVerdictRecord.objects.create(
        change=change, minute=15, verdict="fail", reason=change.verdict_reason, control="off",
        window_start=change_at, window_end=change_at + timedelta(minutes=15),
    )  # fmt: skip
    FlagFinding.objects.create(
        change=change, record=record, service="checkout", variant="on", metric="error_rate",
        route="", baseline_value=0.0, candidate_value=0.5, baseline_n=60, candidate_n=30,
        p_value=1e-6, adjusted_p_value=1e-5, threshold="+0.5 pp and ×1.5", significant=True,
        direction="up",
    )  # fmt: skip
    hostile = FlagChange.objects.create(
        flag=XSS, services=["payments"], at=now - timedelta(minutes=12), actor=XSS,
        description=XSS, control="off", verdict="pending", verdict_reason=f"Watching {XSS}.",
        shares_after={XSS: 1.0},
    )  # fmt: skip
    return FlagWorld(change, hostile, trace_id.hex())
