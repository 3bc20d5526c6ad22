"""telemetry/flag_events.py: every carrier and attribute name a flag evaluation arrives with.

Expected values come from the semantic conventions (docs/feature-flags) and
the deprecated registry, written out by hand here.
"""

from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from telemetry import flag_events
from telemetry.flag_events import FOUND, MISSING, NO_REQUEST, SpanNode, find_request
from tests.telemetry.otlp_payloads import any_value, key_values, unix_nano

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
TRACE, SPAN = b"\x01" * 16, b"\x02" * 8


def one_event(attributes: dict, *, name: str = "feature_flag.evaluation", at=T0):
    found = flag_events.from_span_events(
        [{"name": name, "time_unix_nano": unix_nano(at), "attributes": attributes}],
        trace_id=TRACE,
        span_id=SPAN,
        service="checkout",
        environment="production",
        span_start=T0 - timedelta(seconds=1),
    )
    assert len(found) <= 1
    return found[0] if found else None


class TestSpanEvents:
    def test_it_reads_the_current_attribute_names(self):
        evaluation = one_event(
            {
                "feature_flag.key": "new-checkout",
                "feature_flag.result.variant": "on",
                "feature_flag.result.value": "true",
                "feature_flag.provider.name": "flagd",
                "feature_flag.result.reason": "TARGETING_MATCH",
                "feature_flag.context.id": "user-7",
                "feature_flag.set.id": "proj-1",
                "feature_flag.version": "12",
            }
        )
        assert evaluation.flag == "new-checkout"
        assert evaluation.cohort == "on"
        assert evaluation.variant == "on"
        assert evaluation.value == "true"
        assert evaluation.provider == "flagd"
        assert evaluation.reason == "targeting_match"
        assert evaluation.context_id == "user-7"
        assert evaluation.set_id == "proj-1"
        assert evaluation.flag_version == "12"
        assert evaluation.error_type == ""
        assert evaluation.at == T0
        assert (evaluation.trace_id, evaluation.span_id) == (TRACE, SPAN)
        assert evaluation.carrier == "span_event"

    @pytest.mark.parametrize(
        ("old_name", "field", "expected"),
        [
            ("feature_flag.variant", "variant", "blue"),
            ("feature_flag.provider_name", "provider", "blue"),
            ("feature_flag.evaluation.reason", "reason", "blue"),
            ("feature_flag.reason", "reason", "blue"),
            ("feature_flag.evaluation.error.message", "error_message", "blue"),
        ],
    )
    def test_it_reads_each_deprecated_name(self, old_name, field, expected):
        evaluation = one_event({"feature_flag.key": "color", old_name: "blue"})
        assert getattr(evaluation, field) == expected

    def test_the_current_name_wins_over_the_deprecated_one(self):
        evaluation = one_event(
            {
                "feature_flag.key": "color",
                "feature_flag.variant": "old",
                "feature_flag.result.variant": "new",
                "feature_flag.provider_name": "old-provider",
                "feature_flag.provider.name": "new-provider",
            }
        )
        assert (evaluation.variant, evaluation.provider) == ("new", "new-provider")

    def test_it_accepts_the_old_event_name(self):
        evaluation = one_event({"feature_flag.key": "color", "feature_flag.variant": "red"},
                               name="feature_flag")  # fmt: skip
        assert evaluation.cohort == "red"

    def test_it_ignores_other_events_and_events_without_a_key(self):
        assert one_event({"feature_flag.key": "color"}, name="exception") is None
        assert one_event({"feature_flag.result.variant": "on"}) is None

    @pytest.mark.parametrize(
        ("value", "cohort"),
        [
            ('"on"', "on"),  # the Python hook JSON-encodes values
            ("on", "on"),  # the JavaScript hooks send them typed
            (True, "true"),
            ("true", "true"),
            (3, "3"),
            ("3", "3"),
            (2.5, "2.5"),
            ('{"b": 1, "a": 2}', '{"a":2,"b":1}'),
            ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ],
    )
    def test_without_a_variant_the_value_is_the_cohort(self, value, cohort):
        evaluation = one_event({"feature_flag.key": "limit", "feature_flag.result.value": value})
        assert evaluation.variant == ""
        assert evaluation.cohort == cohort

    def test_an_error_is_a_cohort_of_its_own(self):
        evaluation = one_event(
            {
                "feature_flag.key": "new-checkout",
                "feature_flag.result.value": "false",
                "feature_flag.result.reason": "error",
                "error.type": "provider_not_ready",
                "error.message": "flagd is down",
            }
        )
        assert evaluation.cohort == "error:provider_not_ready"
        assert evaluation.value == "false"
        assert evaluation.error_message == "flagd is down"

    def test_an_error_outranks_a_variant(self):
        evaluation = one_event(
            {"feature_flag.key": "f", "feature_flag.result.variant": "off", "error.type": "general"}
        )
        assert evaluation.cohort == "error:general"

    def test_an_event_without_a_time_takes_the_span_start(self):
        found = flag_events.from_span_events(
            [{"name": "feature_flag.evaluation", "attributes": {"feature_flag.key": "f"}}],
            trace_id=TRACE,
            span_id=SPAN,
            service="s",
            environment="",
            span_start=T0,
        )
        assert found[0].at == T0
        assert found[0].cohort == "(no value)"

    def test_long_labels_are_cut(self):
        evaluation = one_event({"feature_flag.key": "k" * 500, "feature_flag.variant": "v" * 500})
        assert len(evaluation.flag) == 200
        assert len(evaluation.cohort) == 200

    def test_it_reads_span_rows_as_the_decoder_makes_them(self):
        from telemetry import otlp
        from tests.telemetry.otlp_payloads import make_request, make_span

        flagged = make_span(trace_id=TRACE, span_id=SPAN, start=T0, events=[
            ("exception", {"exception.type": "E"}),
            ("feature_flag.evaluation", {"feature_flag.key": "f",
                                         "feature_flag.result.variant": "on"}),
        ])  # fmt: skip
        # Flag attribute names on another event are no evaluation.
        other = make_span(start=T0, events=[("cache", {"feature_flag.key": "f"})])
        limits = otlp.Limits(oldest=T0 - timedelta(days=1), newest=T0 + timedelta(days=1),
                             retention_days=1, max_attribute_value_bytes=1024)  # fmt: skip
        rows = otlp.spans_to_rows(make_request([flagged, other]), limits).rows
        found = flag_events.from_span_rows(rows)
        assert [(e.flag, e.cohort, e.span_id, e.at) for e in found] == [("f", "on", SPAN, T0)]
        assert found[0].service == "checkout"

    def test_the_decoders_picks_are_the_events_json_read_back(self):
        from telemetry import otlp
        from tests.telemetry.otlp_payloads import make_request, make_span

        first = make_span(start=T0, events=[
            ("feature_flag", {"feature_flag.key": "old-name"}),
            ("exception", {"exception.type": "E"}),
            ("feature_flag.evaluation", {"feature_flag.key": "f", "feature_flag.variant": "b"}),
        ])  # fmt: skip
        second = make_span(start=T0, events=[("cache", {"feature_flag.key": "f"})])
        limits = otlp.Limits(oldest=T0 - timedelta(days=1), newest=T0 + timedelta(days=1),
                             retention_days=1, max_attribute_value_bytes=1024)  # fmt: skip
        batch = otlp.spans_to_rows(make_request([first, second]), limits)

        picked = list(batch.evaluation_events)
        assert [attributes["feature_flag.key"] for _, _, attributes in picked] == ["old-name", "f"]
        assert picked == list(flag_events.evaluation_events(batch.rows))

    @pytest.mark.parametrize("repeat", [1, 2], ids=["first", "remembered"])
    def test_values_equal_in_python_keep_their_own_canonical_text(self, repeat):
        # 1, 1.0 and True are equal (and hash alike) in Python; as flag values
        # they are the JSON texts 1, 1.0 and true.
        for _ in range(repeat):
            values = [
                one_event({"feature_flag.key": "n", "feature_flag.result.value": raw}).value
                for raw in (True, 1, 1.0)
            ]
        assert values == ["true", "1", "1.0"]


def logs_request(records: list[dict], *, resource=None) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(
        key_values(resource or {"service.name": "web", "deployment.environment.name": "prod"})
    )
    scope_logs = resource_logs.scope_logs.add()
    for fields in records:
        record = scope_logs.log_records.add()
        record.attributes.extend(key_values(fields.get("attributes", {})))
        record.event_name = fields.get("event_name", "")
        record.time_unix_nano = fields.get("time_unix_nano", 0)
        record.observed_time_unix_nano = fields.get("observed_time_unix_nano", 0)
        record.trace_id = fields.get("trace_id", b"")
        record.span_id = fields.get("span_id", b"")
        if "body" in fields:
            record.body.CopyFrom(any_value(fields["body"]))
    return request


class TestLogRecords:
    def test_it_takes_the_event_name_field(self):
        batch = flag_events.from_logs_request(
            logs_request(
                [
                    {
                        "event_name": "feature_flag.evaluation",
                        "time_unix_nano": unix_nano(T0),
                        "trace_id": TRACE,
                        "span_id": SPAN,
                        "attributes": {
                            "feature_flag.key": "new-checkout",
                            "feature_flag.result.variant": "on",
                            "feature_flag.provider.name": "InMemoryProvider",
                        },
                    }
                ]
            ),
            received_at=T0 + timedelta(minutes=1),
        )
        [evaluation] = batch.evaluations
        assert (evaluation.service, evaluation.environment) == ("web", "prod")
        assert (evaluation.trace_id, evaluation.span_id) == (TRACE, SPAN)
        assert (evaluation.flag, evaluation.cohort, evaluation.provider) == (
            "new-checkout",
            "on",
            "InMemoryProvider",
        )
        assert evaluation.at == T0
        assert evaluation.carrier == "log"
        assert batch.other_records == 0

    def test_older_senders_name_the_event_in_an_attribute(self):
        batch = flag_events.from_logs_request(
            logs_request(
                [{"attributes": {"event.name": "feature_flag", "feature_flag.key": "f",
                                 "feature_flag.variant": "b"}}]  # fmt: skip
            ),
            received_at=T0,
        )
        assert [e.cohort for e in batch.evaluations] == ["b"]

    def test_the_old_body_value_is_the_value(self):
        batch = flag_events.from_logs_request(
            logs_request(
                [
                    {
                        "event_name": "feature_flag.evaluation",
                        "attributes": {"feature_flag.key": "limit"},
                        "body": {"value": 25},
                    }
                ]
            ),
            received_at=T0,
        )
        assert batch.evaluations[0].cohort == "25"

    def test_other_log_records_are_counted_not_kept(self):
        batch = flag_events.from_logs_request(
            logs_request(
                [
                    {"attributes": {"message": "hello"}, "body": "GET /"},
                    {"event_name": "browser.page_view"},
                    {"event_name": "feature_flag.evaluation", "attributes": {"other": 1}},
                ]
            ),
            received_at=T0,
        )
        assert batch.evaluations == []
        assert batch.other_records == 3

    def test_without_times_it_takes_the_observed_time_then_the_arrival(self):
        observed = T0 + timedelta(seconds=5)
        batch = flag_events.from_logs_request(
            logs_request(
                [
                    {"event_name": "feature_flag", "attributes": {"feature_flag.key": "a"},
                     "observed_time_unix_nano": unix_nano(observed)},
                    {"event_name": "feature_flag", "attributes": {"feature_flag.key": "b"}},
                ]  # fmt: skip
            ),
            received_at=T0,
        )
        assert [e.at for e in batch.evaluations] == [observed, T0]

    def test_a_record_without_trace_context_has_empty_ids(self):
        batch = flag_events.from_logs_request(
            logs_request(
                [{"event_name": "feature_flag", "attributes": {"feature_flag.key": "a"},
                  "trace_id": b"\x01" * 5}]  # fmt: skip
            ),
            received_at=T0,
        )
        assert (batch.evaluations[0].trace_id, batch.evaluations[0].span_id) == (b"", b"")


class TestFindRequest:
    A, B, C, D = (bytes([n]) * 8 for n in range(1, 5))

    def test_the_evaluating_span_may_be_the_request(self):
        spans = {self.A: SpanNode(None, "web", True)}
        assert find_request(self.A, "web", spans) == (FOUND, self.A)

    def test_it_walks_up_to_the_enclosing_server_span(self):
        spans = {
            self.A: SpanNode(None, "web", True),
            self.B: SpanNode(self.A, "web", False),
            self.C: SpanNode(self.B, "web", False),
        }
        assert find_request(self.C, "web", spans) == (FOUND, self.A)

    def test_the_nearest_request_span_wins(self):
        # A consumer span inside a server span: the message being handled is the request.
        spans = {
            self.A: SpanNode(None, "web", True),
            self.B: SpanNode(self.A, "web", True),
            self.C: SpanNode(self.B, "web", False),
        }
        assert find_request(self.C, "web", spans) == (FOUND, self.B)

    def test_a_link_not_yet_arrived_is_missing(self):
        spans = {self.C: SpanNode(self.B, "web", False)}
        assert find_request(self.C, "web", spans) == (MISSING, b"")
        assert find_request(self.D, "web", spans) == (MISSING, b"")

    def test_it_does_not_cross_into_the_calling_service(self):
        spans = {
            self.A: SpanNode(None, "gateway", True),
            self.B: SpanNode(self.A, "gateway", False),  # the gateway's client span
            self.C: SpanNode(self.B, "worker", False),  # the worker has no server span
        }
        assert find_request(self.C, "worker", spans) == (NO_REQUEST, b"")

    def test_a_root_that_is_no_request_means_none(self):
        spans = {self.A: SpanNode(None, "cron", False), self.B: SpanNode(self.A, "cron", False)}
        assert find_request(self.B, "cron", spans) == (NO_REQUEST, b"")

    def test_a_parent_cycle_ends(self):
        spans = {self.A: SpanNode(self.B, "web", False), self.B: SpanNode(self.A, "web", False)}
        assert find_request(self.A, "web", spans) == (NO_REQUEST, b"")
