"""Per-variant verdicts: a cohort with a regression fails against its control; a clean one does not.

Ground truth is built in: at 10 requests/s, the `on` cohort (10%) gets the
stated error rate and latency, the control the baseline ones.
"""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from flags import changes, verdicts
from flags.models import ChangeSource, FlagChange
from telemetry import ingest
from telemetry.flag_store import CohortFilter
from tests.flags.factories import evaluation_event, span_row, with_events

pytestmark = pytest.mark.django_db


def rollout_traffic(start, *, minutes, on_error_rate, on_slowdown=1.0, seed=3) -> list[str]:
    """10 req/s over two routes; 10% of requests evaluate new-checkout=on.

    Stored as ingest stores a batch: each span once, with the evaluation its
    event carries. Returns each request's variant, in order.
    """
    rng = random.Random(seed)
    rows, variants = [], []
    for index in range(minutes * 600):
        at = start + timedelta(seconds=index / 10)
        variant = "on" if rng.random() < 0.1 else "off"
        error_rate = on_error_rate if variant == "on" else 0.01
        slowdown = on_slowdown if variant == "on" else 1.0
        route = ("GET /cart", "POST /checkout")[index % 2]
        row = span_row(service="shop", version="7", start=at, route=route,
                       duration_ms=40 * rng.lognormvariate(0, 0.3) * slowdown,
                       error=rng.random() < error_rate, rng=rng)  # fmt: skip
        rows.append(with_events(row, [evaluation_event("new-checkout", at, variant=variant)]))
        variants.append(variant)
    ingest.store_rows(rows)
    return variants


@pytest.fixture
def change_at():
    return (timezone.now() - timedelta(minutes=40)).replace(second=0, microsecond=0)


def posted_change(change_at) -> FlagChange:
    change, _ = changes.record_change(
        {"flag": "new-checkout", "at": change_at, "services": ["shop"]}, source=ChangeSource.API
    )
    return change


def test_each_request_of_a_cohort_is_read_once(change_at):
    variants = rollout_traffic(change_at, minutes=2, on_error_rate=0.20)
    end = change_at + timedelta(minutes=2)
    for variant in ("on", "off"):
        cohort = CohortFilter(flag="new-checkout", service="shop", start=change_at, end=end,
                              cohort=variant)  # fmt: skip
        side = verdicts.read_cohort(cohort)
        assert sum(side.requests.values()) == variants.count(variant)


def test_an_errors_regression_in_the_cohort_fails_and_is_notified_once(change_at):
    from notifications.models import Delivery, WebhookTarget

    WebhookTarget.objects.create(name="ops", url="http://127.0.0.1:9/hook")
    rollout_traffic(change_at, minutes=16, on_error_rate=0.20)
    change = posted_change(change_at)
    assert change.control == "off"
    result = verdicts.run_look(change.pk, 15)
    change.refresh_from_db()
    assert change.verdict == "fail"
    assert "new-checkout=on" in change.verdict_reason
    failing = change.findings.filter(significant=True)
    assert failing.exists()
    assert {f.variant for f in failing} == {"on"}
    assert result.checkpoint
    verdicts.run_look(change.pk, 15)
    [delivery] = Delivery.objects.all()
    assert delivery.event == "flag_verdict"
    assert "new-checkout=on" in str(delivery.payload)


def test_a_clean_rollout_does_not_fail(change_at):
    rollout_traffic(change_at, minutes=16, on_error_rate=0.01)
    change = posted_change(change_at)
    for minute in (1, 2, 3, 5, 10, 15):
        verdicts.run_look(change.pk, minute)
    change.refresh_from_db()
    assert change.verdict != "fail"
    assert not change.findings.filter(significant=True).exists()


def test_due_looks_are_taken_once(change_at):
    rollout_traffic(change_at, minutes=6, on_error_rate=0.20)
    change = posted_change(change_at)
    now = change_at + timedelta(minutes=5, seconds=40)
    assert verdicts.evaluate_due(now=now) == 1
    assert verdicts.evaluate_due(now=now) == 0
    change.refresh_from_db()
    assert change.next_look == 6


def test_the_change_shows_its_history_and_findings(client, make_token, change_at):
    from tests.helpers import bearer

    rollout_traffic(change_at, minutes=16, on_error_rate=0.20)
    change = posted_change(change_at)
    verdicts.run_look(change.pk, 15)
    body = client.get(f"/api/v1/flags/changes/{change.pk}",
                      headers=bearer(make_token("read"))).json()  # fmt: skip
    assert body["verdict"] == "fail"
    assert [(r["minute"], r["verdict"]) for r in body["verdict_history"]] == [(15, "fail")]
    significant = [f for f in body["findings"] if f["significant"]]
    assert significant and all(f["variant"] == "on" for f in significant)
    assert {f["metric"] for f in significant} >= {"error_rate"}


def recent_traffic(now, shares: dict[str, float], *, minutes=5) -> None:
    """A few requests a second over the last minutes, split between cohorts by share."""
    from tests.flags.factories import evaluation_traffic

    rows = evaluation_traffic("new-checkout", now - timedelta(minutes=minutes), minutes=minutes,
                              per_minute=60, shares=shares, service="shop")  # fmt: skip
    ingest.store_rows(rows)


def old_change(now) -> FlagChange:
    change = posted_change(now - timedelta(minutes=62))
    change.control = "off"
    change.save()
    return change


def test_looks_go_on_after_the_first_hour_while_the_rollout_is_partial():
    now = timezone.now().replace(microsecond=0)
    recent_traffic(now, {"on": 0.1, "off": 0.9})
    change = old_change(now)
    verdicts.run_look(change.pk, 60, now=now)
    change.refresh_from_db()
    assert change.next_look == 65
    assert change.next_look_at == change.at + timedelta(minutes=65, seconds=30)


def test_looks_stop_once_a_variant_serves_everyone():
    now = timezone.now().replace(microsecond=0)
    recent_traffic(now, {"on": 1.0})
    change = old_change(now)
    verdicts.run_look(change.pk, 60, now=now)
    change.refresh_from_db()
    assert change.next_look is None and change.next_look_at is None


def test_a_later_change_of_the_flag_takes_the_looks_over():
    now = timezone.now().replace(microsecond=0)
    recent_traffic(now, {"on": 0.5, "off": 0.5})
    change = old_change(now)
    FlagChange.objects.create(flag="new-checkout", at=now - timedelta(minutes=1),
                              services=["shop"], control="off")  # fmt: skip
    verdicts.run_look(change.pk, 60, now=now)
    change.refresh_from_db()
    assert change.next_look is None


def test_the_looks_of_a_change_spend_at_most_alpha_over_the_horizon(settings):
    # By hand: 1 - 0.99 over the first hour's looks and the continued ones, 5
    # minutes apart up to 24 hours: 276 of them sharing a fifth of it.
    looks = verdicts.flag_looks()
    continued = [m for m in looks if m > 60]
    assert continued[:2] == [65, 70] and continued[-1] == 1440 and len(continued) == 276
    fail = [verdicts.rules_at(m).fail_alpha for m in looks]
    assert sum(fail) == pytest.approx(0.01)
    assert verdicts.rules_at(65).fail_alpha == pytest.approx(0.01 * 0.2 / 276)
    assert verdicts.rules_at(65).pass_alpha == 0
    assert verdicts.rules_at(1).fail_alpha == pytest.approx(0.8 * 0.0075 * (1 / 60) ** 0.5)


def test_a_look_judges_only_the_minutes_before_the_flags_next_change(change_at):
    # 10 clean minutes, then the next change (a wider rollout) whose `on`
    # cohort fails: that is the next change's regression, not this one's.
    rollout_traffic(change_at, minutes=10, on_error_rate=0.01)
    rollout_traffic(change_at + timedelta(minutes=10), minutes=6, on_error_rate=0.30, seed=4)
    change = posted_change(change_at)
    FlagChange.objects.create(flag="new-checkout", at=change_at + timedelta(minutes=10),
                              services=["shop"], control="off")  # fmt: skip

    result = verdicts.look(change, 15)

    assert result.end == change_at + timedelta(minutes=10)
    assert result.verdict != "fail"
    assert verdicts.look(change, 15).verdict == verdicts.look(change, 30).verdict
