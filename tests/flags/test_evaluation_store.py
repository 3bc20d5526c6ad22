"""Storing flag evaluations and attributing them to their requests, whichever arrives first."""

from datetime import timedelta

import pytest
from django.utils import timezone

from telemetry import flag_store, ingest
from telemetry.flag_events import Evaluation
from telemetry.models import Attribution
from tests.flags.factories import INTERNAL, evaluation_event, span_row, with_events

pytestmark = pytest.mark.django_db

TRACE = b"\x07" * 16
SERVER_SPAN, CHILD_SPAN, GRANDCHILD_SPAN = b"\x01" * 8, b"\x02" * 8, b"\x03" * 8


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


def request_rows(now, *, evaluate_on=None, variant="on", error=False, service="web"):
    """A server span, a child and a grandchild; the flag is evaluated on one of them."""
    server = span_row(service=service, version="v1", start=now, route="POST /checkout",
                      duration_ms=120, error=error, exception_type="Boom" if error else "",
                      trace_id=TRACE, span_id=SERVER_SPAN)  # fmt: skip
    child = span_row(service=service, version="v1", start=now, kind=INTERNAL, trace_id=TRACE,
                     span_id=CHILD_SPAN, parent=SERVER_SPAN)  # fmt: skip
    grandchild = span_row(service=service, version="v1", start=now, kind=INTERNAL,
                          trace_id=TRACE, span_id=GRANDCHILD_SPAN, parent=CHILD_SPAN)  # fmt: skip
    rows = {SERVER_SPAN: server, CHILD_SPAN: child, GRANDCHILD_SPAN: grandchild}
    if evaluate_on is not None:
        event = evaluation_event("new-checkout", now, variant=variant)
        rows[evaluate_on] = with_events(rows[evaluate_on], [event])
    return rows


def log_evaluation(now, *, span_id=GRANDCHILD_SPAN, trace_id=TRACE, service="web") -> Evaluation:
    return Evaluation(
        trace_id=trace_id, span_id=span_id, service=service, environment="", at=now,
        flag="new-checkout", cohort="on", variant="on", carrier="log",
    )  # fmt: skip


def stored() -> list[flag_store.StoredEvaluation]:
    # Both forms: rows attributed in their ingest batch are stored per batch.
    start = timezone.now() - timedelta(days=30)
    return flag_store.evaluations_in(start, timezone.now() + timedelta(days=1))


def only_row() -> flag_store.StoredEvaluation:
    [row] = stored()
    return row


class TestIngestTimeAttribution:
    def test_an_event_on_the_server_span_is_attributed_at_once(self, now):
        rows = request_rows(now, evaluate_on=SERVER_SPAN, error=True)
        assert flag_store.store_from_span_rows(list(rows.values())) == 1
        row = only_row()
        assert row.attribution == Attribution.REQUEST
        assert bytes(row.request_span_id) == SERVER_SPAN
        assert (row.route, row.request_version, row.request_duration_us) == (
            "POST /checkout", "v1", 120_000,
        )  # fmt: skip
        assert (row.request_is_error, row.request_error_type) == (True, "Boom")
        assert (row.flag, row.cohort, row.carrier) == ("new-checkout", "on", "span_event")

    def test_an_event_deep_in_the_same_batch_is_attributed_at_once(self, now):
        rows = request_rows(now, evaluate_on=GRANDCHILD_SPAN)
        flag_store.store_from_span_rows(list(rows.values()))
        assert bytes(only_row().request_span_id) == SERVER_SPAN

    def test_two_timeless_evaluations_on_one_span_are_one(self, now):
        rows = request_rows(now)
        attributes = {"feature_flag.key": "new-checkout", "feature_flag.variant": "on"}
        timeless = {"name": "feature_flag", "attributes": attributes}
        rows[SERVER_SPAN] = with_events(rows[SERVER_SPAN], [timeless, timeless])
        assert flag_store.store_from_span_rows(list(rows.values())) == 1
        assert only_row().at == now

    def test_rows_without_evaluations_cost_no_query(self, now, django_assert_num_queries):
        rows = list(request_rows(now).values())
        with django_assert_num_queries(0):
            assert flag_store.store_from_span_rows(rows) == 0


class TestLazyAttribution:
    def test_the_span_stored_first_then_the_log(self, now):
        ingest.store_rows(list(request_rows(now).values()))
        flag_store.store_evaluations([log_evaluation(now)], received_at=now)
        assert only_row().attribution == Attribution.PENDING
        done = flag_store.attribute_pending(now=now)
        assert done["attributed"] == 1
        row = only_row()
        assert row.attribution == Attribution.REQUEST
        assert bytes(row.request_span_id) == SERVER_SPAN
        assert row.route == "POST /checkout"

    def test_the_log_first_then_the_spans(self, now):
        flag_store.store_evaluations([log_evaluation(now)], received_at=now)
        assert flag_store.attribute_pending(now=now)["waiting"] == 1
        # Its next try waits a little: nothing is due right away.
        assert flag_store.attribute_pending(now=now)["waiting"] == 0
        ingest.store_rows(list(request_rows(now).values()))
        later = now + flag_store.RETRY_AFTER
        assert flag_store.attribute_pending(now=later)["attributed"] == 1
        assert bytes(only_row().request_span_id) == SERVER_SPAN

    def test_the_child_span_first_then_its_server_span(self, now):
        rows = request_rows(now, evaluate_on=GRANDCHILD_SPAN)
        ingest.store_rows([rows[GRANDCHILD_SPAN]])
        assert only_row().attribution == Attribution.PENDING
        ingest.store_rows([rows[CHILD_SPAN], rows[SERVER_SPAN]])
        assert flag_store.attribute_pending(now=timezone.now())["attributed"] == 1

    def test_spans_that_never_come_leave_it_unresolved(self, now, settings):
        flag_store.store_evaluations([log_evaluation(now)], received_at=now)
        late = now + timedelta(minutes=settings.MONOENV_ROLLUP_LATENESS_MINUTES + 1)
        assert flag_store.attribute_pending(now=late)["unresolved"] == 1
        assert only_row().attribution == Attribution.UNRESOLVED

    def test_a_service_without_a_request_span_has_none(self, now):
        rows = request_rows(now, service="gateway")
        ingest.store_rows(list(rows.values()))
        flag_store.store_evaluations(
            [log_evaluation(now, service="worker")], received_at=now
        )
        assert flag_store.attribute_pending(now=now)["no_request"] == 1

    def test_a_log_without_trace_context_is_never_pending(self, now):
        flag_store.store_evaluations(
            [log_evaluation(now, trace_id=b"", span_id=b"")], received_at=now
        )
        assert only_row().attribution == Attribution.NO_REQUEST


class TestCohortReads:
    def store_requests(self, now, cohorts: list[tuple[str, bool, float]], *, evaluations=1):
        rows = []
        for index, (variant, error, duration_ms) in enumerate(cohorts):
            row = span_row(service="web", version="v1", start=now + timedelta(seconds=index),
                           route="GET /a", error=error, duration_ms=duration_ms)  # fmt: skip
            events = [evaluation_event("f", now + timedelta(seconds=index, microseconds=n),
                                       variant=variant) for n in range(evaluations)]  # fmt: skip
            rows.append(with_events(row, events))
        flag_store.store_from_span_rows(rows)

    def test_a_request_that_evaluated_twice_counts_once(self, now):
        self.store_requests(now, [("on", True, 10), ("on", False, 20), ("off", False, 30)],
                            evaluations=2)  # fmt: skip
        window = dict(start=now - timedelta(minutes=1), end=now + timedelta(minutes=1))
        on = flag_store.CohortFilter(flag="f", service="web", cohort="on", **window)
        off = flag_store.CohortFilter(flag="f", service="web", exclude_cohort="on", **window)
        assert flag_store.cohort_route_counts(on) == {"GET /a": (2, 1)}
        assert flag_store.cohort_route_counts(off) == {"GET /a": (1, 0)}
        assert sorted(flag_store.cohort_latency_samples_ms(on, max_samples=10)["GET /a"]) == [
            10.0, 20.0,
        ]  # fmt: skip
        assert flag_store.cohort_counts("f", **window) == {"on": 2, "off": 1}
        [seen] = flag_store.flags_seen(**window)
        assert (seen.flag, seen.services, seen.cohorts) == ("f", ("web",), {"on": 2, "off": 1})
        minutes = flag_store.cohort_request_minute_counts(on)
        assert sum(requests for requests, _ in minutes.values()) == 2


class TestJobs:
    def test_the_periodic_tasks_attribute_and_detect(self, now):
        from flags import tasks as flag_tasks
        from telemetry import tasks as telemetry_tasks

        ingest.store_rows(list(request_rows(now).values()))
        flag_store.store_evaluations([log_evaluation(now)], received_at=now)
        assert telemetry_tasks.attribute_flag_evaluations()["attributed"] == 1
        assert flag_tasks.run_periodic() == {"detected": 0, "looks": 0, "explained": 0}

    def test_attribution_goes_on_while_batches_are_full(self, now):
        ingest.store_rows(list(request_rows(now).values()))
        evaluations = [log_evaluation(now + timedelta(microseconds=n)) for n in range(5)]
        flag_store.store_evaluations(evaluations, received_at=now)
        done = flag_store.attribute_pending_for(10, batch_size=2)
        assert done["attributed"] == 5

    def test_the_command_runs_once(self, now):
        from io import StringIO

        from django.core.management import call_command

        flag_store.store_evaluations([log_evaluation(now)], received_at=now)
        out = StringIO()
        call_command("flags", stdout=out)
        assert out.getvalue().startswith("0 evaluation(s) attributed, 1 waiting")

    def test_retention_drops_old_evaluations(self, now, settings):
        from telemetry import tasks

        old = now - timedelta(days=settings.MONOENV_RETENTION_DAYS, hours=1)
        fresh = log_evaluation(now, span_id=b"\x09" * 8)
        flag_store.store_evaluations([log_evaluation(old), fresh], received_at=now)
        tasks.enforce_retention()
        assert [row.at for row in stored()] == [now]

    def test_a_retried_log_export_is_stored_once(self, now):
        evaluations = [log_evaluation(now), log_evaluation(now, span_id=b"\x09" * 8)]
        assert flag_store.store_evaluations(evaluations[:1], received_at=now) == 1
        assert flag_store.store_evaluations(evaluations, received_at=now) == 1
        assert len(stored()) == 2
