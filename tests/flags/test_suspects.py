"""Flag changes as suspects, next to deploys, by the share of the extra errors in a cohort.

Ground truth is built in: shop serves 4 requests/s on two routes; requests
evaluate new-checkout, and only the cohort and versions the scenario names
fail more on POST /checkout. Expected shares are counted here from the rows
generated, by the rule stated in docs/flags.md: a cohort's extra errors are
its errors minus its requests times the error rate of every other request
of the route; the route's extra errors are its errors minus its requests
times its own rate before the onset.
"""

import json
import math
import random
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import jobs, route_watch, suspects
from deployments.models import Deployment
from flags import suspects as flag_suspects
from flags import verdicts
from flags.models import ChangeSource, FlagChange
from slo.models import SLO, Alert, Severity
from telemetry import ingest
from telemetry.otlp import SPAN_COLUMNS
from tests.flags.factories import EVENTS, SERVER, evaluation_event, span_row, with_events
from tests.helpers import bearer, call_trace

pytestmark = pytest.mark.django_db

FLAG = "new-checkout"
CHECKOUT = "POST /checkout"
BASE_ERRORS = 0.01
START, ERROR, ROUTE, DURATION, SERVICE, KIND = (
    SPAN_COLUMNS.index(c)
    for c in ("start_time", "is_error", "http_route", "duration_us", "service", "kind")
)


def shop_traffic(start, end, *, version, on_share, on_error, seed=1, on_slowdown=lambda at: 1.0):
    """4 requests/s; `version(at)`, `on_share(at)` and `on_error(at, version)` decide each one.

    Returns (span rows, cohort of each row) so the test can count by itself.
    """
    rng = random.Random(seed)
    rows, cohorts = [], []
    at, index = start, 0
    while at < end:
        variant = "on" if rng.random() < on_share(at) else "off"
        route = (CHECKOUT, "GET /cart")[index % 2]
        rate, slowdown = BASE_ERRORS, 1.0
        if route == CHECKOUT and variant == "on":
            rate, slowdown = on_error(at, version(at)), on_slowdown(at)
        row = span_row(service="shop", version=version(at), start=at, route=route,
                       duration_ms=40 * rng.lognormvariate(0, 0.3) * slowdown,
                       error=rng.random() < rate, rng=rng)  # fmt: skip
        rows.append(with_events(row, [evaluation_event(FLAG, at, variant=variant)]))
        cohorts.append(variant)
        at += timedelta(seconds=0.25)
        index += 1
    return rows, cohorts


def expected_share(rows, cohorts, onset, end, baseline_start, cohort="on"):
    """The cohort's share of the extra errors on POST /checkout, counted from the rows."""
    def count(pick):
        chosen = [r for r, c in zip(rows, cohorts, strict=True) if r[ROUTE] == CHECKOUT
                  and pick(r, c)]  # fmt: skip
        return len(chosen), sum(1 for r in chosen if r[ERROR])

    n_before, e_before = count(lambda r, c: baseline_start <= r[START] < onset)
    n_after, e_after = count(lambda r, c: onset <= r[START] < end)
    n_in, e_in = count(lambda r, c: onset <= r[START] < end and c == cohort)
    others_rate = (e_after - e_in) / (n_after - n_in)
    route_extra = e_after - n_after * e_before / n_before
    return (e_in - n_in * others_rate) / route_extra


def expected_time_share(rows, cohorts, onset, end, baseline_start, cohort="on"):
    """The same in ln(ms): the cohort's extra time over the route's, counted from the rows."""
    def log_ms(pick):
        return [math.log(r[DURATION] / 1000) for r, c in zip(rows, cohorts, strict=True)
                if r[ROUTE] == CHECKOUT and pick(r, c)]  # fmt: skip

    before = log_ms(lambda r, c: baseline_start <= r[START] < onset)
    after = log_ms(lambda r, c: onset <= r[START] < end)
    inside = log_ms(lambda r, c: onset <= r[START] < end and c == cohort)
    others_mean = (sum(after) - sum(inside)) / (len(after) - len(inside))
    route_extra = sum(after) - len(after) * sum(before) / len(before)
    return (sum(inside) - len(inside) * others_mean) / route_extra


def percent_in(evidence: str, extra: str = "extra errors") -> int:
    return int(re.search(rf"(\d+)% of the {extra}", evidence).group(1))


def flag_change(at, **fields) -> FlagChange:
    return FlagChange.objects.create(flag=FLAG, at=at, services=["shop"],
                                     source=ChangeSource.API, control="off", **fields)  # fmt: skip


def checkout_regression(t0, minutes=10):
    return suspects.Regression(
        service="shop", route=CHECKOUT, start=t0, end=t0 + timedelta(minutes=minutes),
        baseline_start=t0 - timedelta(minutes=60),
    )  # fmt: skip


@pytest.fixture
def t0():
    """Far enough back that every look of a rollout at t0 has passed."""
    return (timezone.now() - timedelta(hours=3)).replace(second=0, microsecond=0)


@pytest.fixture
def flag_breaks_checkout(t0):
    """shop deployed v2 20 min before t0, cleanly; at t0 new-checkout=on (20%) fails 30%."""
    start, end = t0 - timedelta(minutes=60), t0 + timedelta(minutes=12)
    deployed = t0 - timedelta(minutes=20)
    rows, cohorts = shop_traffic(
        start, end, version=lambda at: "v2" if at >= deployed else "v1",
        on_share=lambda at: 0.2 if at >= t0 else 0.0, on_error=lambda at, v: 0.3,
    )  # fmt: skip
    ingest.store_rows(rows)
    deploy = Deployment.objects.create(service="shop", version="v2", previous_version="v1",
                                       started_at=deployed)  # fmt: skip
    return deploy, flag_change(t0), rows, cohorts


def test_a_regression_in_one_cohort_ranks_its_flag_change_first(t0, flag_breaks_checkout):
    deploy, change, rows, cohorts = flag_breaks_checkout
    regression = checkout_regression(t0)
    recorded = suspects.record_for_alert(1, regression)
    top, *rest = recorded
    assert top.suspect_kind == "flag" and top.suspect_change_id == change.pk
    assert top.suspect_label == f"flag {FLAG}" and top.suspect is None
    assert top.onset_at == t0
    share = expected_share(rows, cohorts, t0, regression.end, regression.baseline_start)
    assert percent_in(top.evidence) == round(min(share, 1.0) * 100)
    assert top.evidence.startswith(f"{percent_in(top.evidence)}% of the extra errors on "
                                   f"{CHECKOUT} are in requests with {FLAG}=on;")  # fmt: skip
    assert share > 0.8 and top.score == pytest.approx(min(share, 1) + 0.01, abs=0.011)
    # The clean deploy before it is left what the flag's cohort does not explain.
    [own] = rest
    assert own.suspect == deploy and own.score < 0.25
    assert "not explained by services below it or flag cohorts" in own.evidence


@pytest.fixture
def deploy_breaks_cohort(t0):
    """new-checkout=on has served 20% since 40 min before t0; shop v2 at t0 breaks it."""
    start, end = t0 - timedelta(minutes=60), t0 + timedelta(minutes=16)
    rows, cohorts = shop_traffic(
        start, end, version=lambda at: "v2" if at >= t0 else "v1",
        on_share=lambda at: 0.2 if at >= t0 - timedelta(minutes=40) else 0.0,
        on_error=lambda at, version: 0.3 if version == "v2" else BASE_ERRORS, seed=2,
    )  # fmt: skip
    ingest.store_rows(rows)
    change = flag_change(t0 - timedelta(minutes=40))
    deploy = Deployment.objects.create(service="shop", version="v2", previous_version="v1",
                                       started_at=t0)  # fmt: skip
    return deploy, change, rows, cohorts


def test_a_deploy_whose_regression_lives_in_one_cohort_names_the_flag(t0, deploy_breaks_cohort):
    deploy, change, rows, cohorts = deploy_breaks_cohort
    regression = suspects.Regression(
        service="shop", route=CHECKOUT, start=t0, end=t0 + timedelta(minutes=10),
        baseline_start=t0 - timedelta(minutes=60), began=t0,
    )  # fmt: skip
    own, flag = suspects.record_for_deploy(deploy, regression)
    assert own.suspect == deploy and own.score >= 0.99
    share = expected_share(rows, cohorts, own.onset_at, regression.end, regression.baseline_start)
    assert f"{suspects.LIVES_IN} {round(min(share, 1) * 100)}% of the extra errors on " \
           f"{CHECKOUT} are in requests with {FLAG}=on." in own.evidence  # fmt: skip
    # The flag changed 40 minutes before, and its cohort was healthy until v2 came.
    assert flag.suspect_change_id == change.pk and flag.score <= 0.01
    assert "did not begin it" in flag.evidence
    assert suspects.blamed_elsewhere(deploy) is None


def test_the_failed_deploys_reason_and_message_name_the_flag(t0, deploy_breaks_cohort):
    from deployments import verdicts as deploy_verdicts
    from notifications.models import Delivery, WebhookTarget

    WebhookTarget.objects.create(name="ops", url="http://127.0.0.1:9/hook")
    deploy, *_ = deploy_breaks_cohort
    record = deploy_verdicts.run_checkpoint(deploy.pk, 15)
    deploy.refresh_from_db()
    assert record.verdict == "fail"
    sentence = suspects.lives_in(deploy)
    assert sentence.startswith(suspects.LIVES_IN) and f"{FLAG}=on." in sentence
    assert deploy.verdict_reason.endswith(sentence) and record.reason.endswith(sentence)
    [delivery] = Delivery.objects.filter(event="deploy_verdict")
    assert f"{FLAG}=on" in str(delivery.payload)


def test_a_slowdown_in_one_cohort_ranks_its_flag_change_first(t0):
    """At t0 new-checkout=on (20%) makes POST /checkout three times slower; no errors change."""
    start, end = t0 - timedelta(minutes=60), t0 + timedelta(minutes=12)
    rows, cohorts = shop_traffic(
        start, end, version=lambda at: "v1", on_share=lambda at: 0.2 if at >= t0 else 0.0,
        on_error=lambda at, v: BASE_ERRORS, on_slowdown=lambda at: 3.0, seed=6,
    )  # fmt: skip
    ingest.store_rows(rows)
    change = flag_change(t0)
    Deployment.objects.create(service="shop", version="v1", started_at=t0 - timedelta(minutes=90))
    regression = checkout_regression(t0)
    top, *_ = suspects.record_for_alert(3, regression)
    assert top.suspect_change_id == change.pk and top.onset_at == t0
    assert "(a change-point in its latency)" not in top.evidence  # the flag's sentence is its own
    share = expected_time_share(rows, cohorts, t0, regression.end, regression.baseline_start)
    # The cohort's ln(ms) are a sample of about MONOENV_DEPLOY_MAX_SAMPLES: within a point.
    assert abs(percent_in(top.evidence, "extra time") - min(share, 1) * 100) <= 1.5
    assert f"of the extra time on {CHECKOUT} is in requests with {FLAG}=on;" in top.evidence


def test_a_regression_spread_over_every_cohort_leaves_the_flag_unblamed(t0):
    """shop v2 at t0 fails 30% of checkouts whatever the flag; new-checkout changed at t0 too."""
    start, end = t0 - timedelta(minutes=60), t0 + timedelta(minutes=12)
    rows, _ = shop_traffic(
        start, end, version=lambda at: "v2" if at >= t0 else "v1",
        on_share=lambda at: 0.5 if at >= t0 else 0.1, on_error=lambda at, v: BASE_ERRORS, seed=3,
    )  # fmt: skip
    # Every checkout of v2 fails 30%, on or off.
    rng = random.Random(4)
    rows = [
        r[:ERROR] + (rng.random() < 0.3,) + r[ERROR + 1:]
        if r[ROUTE] == CHECKOUT and r[START] >= t0 else r
        for r in rows
    ]  # fmt: skip
    ingest.store_rows(rows)
    change = flag_change(t0)
    deploy = Deployment.objects.create(service="shop", version="v2", started_at=t0)
    own, flag = suspects.record_for_alert(2, checkout_regression(t0))
    assert own.suspect == deploy and flag.suspect_change_id == change.pk
    assert flag.score < 0.25 and "at most" in flag.evidence
    assert suspects.LIVES_IN not in own.evidence


def test_the_alert_api_lists_a_flag_change_as_a_suspect(t0, flag_breaks_checkout, client,
                                                        read_token):  # fmt: skip
    _, change, _, _ = flag_breaks_checkout
    slo = SLO.objects.create(name="checkout", service="shop", route=CHECKOUT, objective=99.9)
    now = t0 + timedelta(minutes=10)
    alert = Alert.objects.create(
        slo=slo, severity=Severity.PAGE, long_window=timedelta(minutes=10),
        short_window=timedelta(minutes=5), threshold=14.4, long_burn_rate=300,
        short_burn_rate=300, budget_consumed_pct=5, fired_at=now, last_evaluated_at=now,
    )  # fmt: skip
    assert jobs.explain_alerts(now=now) == 1
    body = client.get(f"/api/v1/alerts/{alert.pk}/suspects", headers=bearer(read_token)).json()
    top = body[0]
    assert top["kind"] == "flag" and top["deployment"] is None
    assert top["change"]["id"] == change.pk and top["change"]["label"] == f"flag {FLAG}"
    assert f"in requests with {FLAG}=on" in top["evidence"]
    # The SLO pages name the likely cause "flag new-checkout", linked to the change.
    from dashboard import causes

    cause = causes.of_alerts([alert.pk])[alert.pk]
    assert (cause["service"], cause["version"], cause["url"]) == ("flag", FLAG, change.link())


def test_a_route_shift_message_names_the_flag_change(t0, flag_breaks_checkout):
    from deployments.models import RouteShift

    _, change, _, _ = flag_breaks_checkout
    shift = RouteShift.objects.create(
        service="shop", route=CHECKOUT, metric="error_rate", baseline_value=0.01,
        current_value=0.07, baseline_n=7000, current_n=1200, p_value=1e-9,
        adjusted_p_value=1e-8, threshold="", window_start=t0,
        window_end=t0 + timedelta(minutes=10), detected_at=t0 + timedelta(minutes=10),
    )  # fmt: skip
    suspects.record_for_shift(shift, checkout_regression(t0))
    message = route_watch.shift_message(shift)
    assert f"Top suspect: flag {FLAG}." in message.summary
    assert message.details["top_suspect"]["kind"] == "flag"
    assert message.details["top_suspect"]["id"] == change.pk


def test_a_failed_rollout_lists_the_deploy_that_broke_its_cohort(t0, client, read_token):
    """new-checkout=on goes to 20% at t0-5min, healthy; shop v2 at t0 breaks only that cohort.

    The rollout fails its verdict (its cohort against off), but the regression
    is not the flag's: the flag change API lists the deploy.
    """
    change_at = t0 - timedelta(minutes=5)
    start, end = t0 - timedelta(minutes=65), t0 + timedelta(minutes=12)
    rows, _ = shop_traffic(
        start, end, version=lambda at: "v2" if at >= t0 else "v1",
        on_share=lambda at: 0.2 if at >= change_at else 0.0,
        on_error=lambda at, version: 0.3 if version == "v2" else BASE_ERRORS, seed=5,
    )  # fmt: skip
    ingest.store_rows(rows)
    deploy = Deployment.objects.create(service="shop", version="v2", previous_version="v1",
                                       started_at=t0)  # fmt: skip
    change = flag_change(change_at)
    verdicts.run_look(change.pk, 15, now=change_at + timedelta(minutes=16))
    change.refresh_from_db()
    assert change.verdict == "fail"
    assert flag_suspects.explain_failed_rollouts(now=change_at + timedelta(minutes=16)) == 1
    assert flag_suspects.explain_failed_rollouts(now=change_at + timedelta(minutes=16)) == 0
    body = client.get(f"/api/v1/flags/changes/{change.pk}", headers=bearer(read_token)).json()
    [listed] = body["suspects"]
    assert listed["kind"] == "deploy" and listed["deployment"]["id"] == deploy.pk
    assert f"{suspects.LIVES_IN}" in listed["evidence"]


def test_a_failed_rollout_that_is_its_own_regression_lists_no_other_suspect(
    t0, flag_breaks_checkout, client, read_token
):
    _, change, _, _ = flag_breaks_checkout
    verdicts.run_look(change.pk, 10, now=t0 + timedelta(minutes=11))
    change.refresh_from_db()
    assert change.verdict == "fail"
    flag_suspects.explain_failed_rollouts(now=t0 + timedelta(minutes=11))
    recorded = suspects.for_change("flag", change.pk, show_all=True).shown
    assert recorded[0].suspect_change_id == change.pk  # the flag itself ranks first
    body = client.get(f"/api/v1/flags/changes/{change.pk}", headers=bearer(read_token)).json()
    # The clean deploy 20 minutes before explains next to nothing: not listed by default.
    assert body["suspects"] == []
    every = client.get(f"/api/v1/flags/changes/{change.pk}", {"all": "1"},
                       headers=bearer(read_token)).json()  # fmt: skip
    assert [s["kind"] for s in every["suspects"]] == ["deploy"]


def test_the_cohort_share_is_the_extra_errors_over_the_routes_extra():
    """By hand: 200 requests with 40 errors in the cohort, 800 with 16 outside, 1% before.

    Others' rate 16/800 = 2%; the cohort's extra 40 − 200 × 0.02 = 36; the
    route's extra 56 − 1000 × 0.01 = 46; the share 36 / 46.
    """
    share = flag_suspects.extra_share(flag_suspects.Side(200, 40),
                                      flag_suspects.Side(1000, 56), 1000 * (56 / 1000 - 0.01))
    assert share == pytest.approx(36 / 46)
    assert flag_suspects.extra_share(flag_suspects.Side(100, 0),
                                     flag_suspects.Side(1000, 56), 46) == 0.0


def test_the_extra_time_is_counted_in_log_milliseconds():
    """By hand: 100 requests at ln 80 ms in the cohort, 900 at ln 40 ms, all at ln 40 before.

    Others' mean is ln 40; the cohort's extra 100 × ln 2; the route's the same: share 1.
    A cohort at ln 40 with the others at ln 80 holds none of it.
    """
    ln40, ln80 = math.log(40), math.log(80)
    route = flag_suspects.Side(1000, 0, 100 * ln80 + 900 * ln40)
    route_extra = route.log_ms_sum - 1000 * ln40
    assert route_extra == pytest.approx(100 * math.log(2))
    cohort = flag_suspects.Side(100, 0, 100 * ln80)
    assert flag_suspects.extra_share(cohort, route, route_extra, metric="latency") == \
        pytest.approx(1.0)  # fmt: skip
    fast = flag_suspects.Side(100, 0, 100 * ln40)
    slow_route = flag_suspects.Side(1000, 0, 100 * ln40 + 900 * ln80)
    assert flag_suspects.extra_share(fast, slow_route, 900 * math.log(2), metric="latency") == 0.0


def test_the_pages_name_a_flag_suspect_as_they_name_a_deploy(t0, deploy_breaks_cohort, client):
    from django.contrib.auth.models import User
    from django.urls import reverse

    from dashboard import causes

    deploy, change, *_ = deploy_breaks_cohort
    regression = suspects.Regression(
        service="shop", route=CHECKOUT, start=t0, end=t0 + timedelta(minutes=10),
        baseline_start=t0 - timedelta(minutes=60), began=t0,
    )  # fmt: skip
    suspects.record_for_deploy(deploy, regression)
    suspects.record_for_alert(7, regression)
    client.force_login(User.objects.create_user("viewer", password="a-long-test-password"))
    data = client.get(reverse("dashboard:deploy-json", args=[deploy.pk])).json()
    [own] = data["suspects"]
    assert own["id"] == deploy.pk and suspects.LIVES_IN in own["evidence"]
    [flag] = data["more_suspects"]
    assert (flag["kind"], flag["service"], flag["version"]) == ("flag", "flag", FLAG)
    assert flag["url"] == change.link() and flag["started_at"] == change.at.isoformat()
    # The alert's likely cause, on the SLO pages, is the deploy.
    assert causes.of_alerts([7])[7]["version"] == "v2"


# Flags evaluated below the regressed service, followed down the traces.

STOCK, PAGE, STOCK_ROUTE = "stock-cache", "GET /page", "GET /stock"


def front_calls_back(t0, *, back_slowdown, front_slowdown=1.2, seed=8, on_since=None,
                     back_from=None, back_error_rate=0.0):  # fmt: skip
    """front GET /page calls back GET /stock, 2 requests/s; back evaluates stock-cache.

    From `on_since` (t0 unless given), stock-cache=on serves 20%. From t0,
    back's requests are `back_slowdown(variant)` times slower, front's own
    time `front_slowdown` times, and `back_error_rate` of them fail in back
    (and so in front), whatever the variant. back serves b2 from `back_from`
    (t0 unless given). front deployed v2 20 minutes before t0, cleanly.
    Returns (front's deploy, the rows).
    """
    rng = random.Random(seed)
    rows = []
    at = t0 - timedelta(minutes=20)
    while at < t0 + timedelta(minutes=10):
        variant = "on" if at >= (on_since or t0) and rng.random() < 0.2 else "off"
        after = at >= t0
        back_ms = 30 * rng.lognormvariate(0, 0.3) * (back_slowdown(variant) if after else 1)
        own_ms = 10 * rng.lognormvariate(0, 0.2) * (front_slowdown if after else 1)
        # Drawn only when asked, so that the other scenarios keep their random streams.
        failing = after and back_error_rate > 0 and rng.random() < back_error_rate
        back_version = "b2" if at >= (back_from or t0) else "b1"
        trace = call_trace(
            at, rng=rng, caller={"service": "front", "version": "v2", "route": PAGE,
                                 "duration_ms": own_ms + back_ms, "error": failing},
            callee={"service": "back", "version": back_version, "route": STOCK_ROUTE,
                    "duration_ms": back_ms, "error": failing},
        )  # fmt: skip
        trace[-1] = with_events(trace[-1], [evaluation_event(STOCK, at, variant=variant)])
        rows += trace
        at += timedelta(seconds=0.5)
    ingest.store_rows(rows)
    deploy = Deployment.objects.create(service="front", version="v2", previous_version="v1",
                                       started_at=t0 - timedelta(minutes=20))  # fmt: skip
    return deploy, rows


def front_regression(t0) -> suspects.Regression:
    """Fewer than 3000 front requests on each side of t0: the traces read are all of them."""
    return suspects.Regression(
        service="front", route=PAGE, start=t0, end=t0 + timedelta(minutes=10),
        baseline_start=t0 - timedelta(minutes=20),
    )  # fmt: skip


def back_time_share(rows, regression, onset):
    """back's share of front's extra time, counted by hand as the deploys' ranking counts it.

    The rise in mean milliseconds of back's spans under front's requests, over
    the rise in mean milliseconds of front's requests (after the onset against before).
    """
    def mean_ms(service, start, end):
        picked = [r[DURATION] for r in rows if r[SERVICE] == service and r[KIND] == SERVER
                  and start <= r[START] < end]  # fmt: skip
        return sum(picked) / len(picked) / 1000

    before, after = (regression.baseline_start, onset), (onset, regression.end)
    rise = mean_ms("back", *after) - mean_ms("back", *before)
    return min(1.0, rise / (mean_ms("front", *after) - mean_ms("front", *before)))


def back_cohort_shares(rows, regression, onset):
    """Each stock-cache cohort's share of back's own extra time on GET /stock, in ln(ms)."""
    def log_ms(start, end, variant=None):
        return [math.log(r[DURATION] / 1000) for r in rows
                if r[SERVICE] == "back" and start <= r[START] < end
                and (variant is None or _variant(r) == variant)]  # fmt: skip

    before, after = log_ms(regression.baseline_start, onset), log_ms(onset, regression.end)
    back_extra = sum(after) - len(after) * sum(before) / len(before)
    shares = {}
    for variant in ("on", "off"):
        inside = log_ms(onset, regression.end, variant)
        others_mean = (sum(after) - sum(inside)) / (len(after) - len(inside))
        extra = sum(inside) - len(inside) * others_mean
        shares[variant] = min(1.0, max(0.0, extra / back_extra))
    return shares


def _variant(row) -> str:
    return json.loads(row[EVENTS])[0]["attributes"]["feature_flag.result.variant"]


def stock_change(at) -> FlagChange:
    return FlagChange.objects.create(flag=STOCK, at=at, services=["back"],
                                     source=ChangeSource.API, control="off")  # fmt: skip


def test_a_flag_below_the_regressed_service_ranks_first_with_the_chained_share(t0):
    """stock-cache=on makes back 3× slower, and front calls back: front's latency regresses."""
    front_deploy, rows = front_calls_back(t0, back_slowdown=lambda v: 3.0 if v == "on" else 1.0)
    change = stock_change(t0)
    regression = front_regression(t0)
    top, own = suspects.record_for_deploy(front_deploy, regression)
    assert top.suspect_kind == "flag" and top.suspect_change_id == change.pk
    assert top.onset_at == t0
    through = back_time_share(rows, regression, t0)
    in_cohort = back_cohort_shares(rows, regression, t0)["on"]
    assert 0.6 < through < 0.95 and in_cohort > 0.9  # the scenario is what it says
    assert top.evidence == (
        f"{through:.0%} of the extra time on front {PAGE} is in back, and {in_cohort:.0%} of "
        f"that in requests with {STOCK}=on; {STOCK} changed as the regression began."
    )
    # The chained share, plus the tie-break of a change at the onset (0.01).
    assert top.score == pytest.approx(through * in_cohort + 0.01, abs=1e-3)
    # front's clean deploy is left what back does not explain.
    assert own.suspect == front_deploy
    assert own.score == pytest.approx(1 - through + 0.01 * (1 - 20 / 120), abs=1e-3)
    assert "not explained by services below it or flag cohorts" in own.evidence
    assert suspects.blamed_elsewhere(front_deploy) == top


def test_a_flag_below_whose_cohorts_are_alike_gets_no_credit(t0):
    """back is 3× slower for every request from t0, whatever stock-cache serves."""
    front_deploy, rows = front_calls_back(t0, back_slowdown=lambda v: 3.0, seed=9)
    change = stock_change(t0)
    regression = front_regression(t0)
    own, flag = suspects.record_for_deploy(front_deploy, regression)
    assert own.suspect == front_deploy and flag.suspect_change_id == change.pk
    through = back_time_share(rows, regression, t0)
    best = max(back_cohort_shares(rows, regression, t0).values())
    assert best < 0.1  # by construction, the cohorts are alike
    assert flag.score == pytest.approx(through * best + 0.01, abs=1e-3)
    assert f"{STOCK} changed as the regression began; at most" in flag.evidence
    assert "flag cohorts" not in own.evidence and suspects.LIVES_IN not in own.evidence


def test_a_flag_below_that_only_hosts_the_regression_is_named_by_the_deploys(t0):
    """stock-cache=on has served 20% since 40 min before t0; back b2 at t0 slows only it 3×."""
    front_deploy, rows = front_calls_back(t0, back_slowdown=lambda v: 3.0 if v == "on" else 1.0,
                                          on_since=t0 - timedelta(minutes=40), seed=10)  # fmt: skip
    change = stock_change(t0 - timedelta(minutes=40))
    back_deploy = Deployment.objects.create(service="back", version="b2", previous_version="b1",
                                            started_at=t0)  # fmt: skip
    regression = front_regression(t0)
    back, own, flag = suspects.record_for_deploy(front_deploy, regression)
    through = back_time_share(rows, regression, t0)
    in_cohort = back_cohort_shares(rows, regression, t0)["on"]
    assert through * in_cohort >= 0.8  # the regression lives in that cohort
    # back's deploy began it: it keeps its whole share, and ranks above the flag.
    assert back.suspect == back_deploy
    assert back.score == pytest.approx(through + 0.01, abs=1e-3)
    assert "flag cohort" not in back.evidence
    # The cohort was as fast as the others until b2 came: the flag did not begin it.
    assert flag.suspect_change_id == change.pk and "did not begin it" in flag.evidence
    assert flag.score == pytest.approx(0.01 * (1 - 40 / 120), abs=1e-4)
    # front's own deploy says where the regression lives.
    assert own.suspect == front_deploy
    assert own.evidence.endswith(
        f"{suspects.LIVES_IN} {through:.0%} of the extra time on front {PAGE} is in back, "
        f"and {in_cohort:.0%} of that in requests with {STOCK}=on."
    )


@pytest.mark.parametrize("front_slowdown", [1.2, 3.0])
def test_a_flag_below_outranks_the_clean_deploy_of_its_service(t0, front_slowdown):
    """back deployed b2 cleanly 10 min before t0; at t0 stock-cache=on makes back 3× slower.

    back's deploy is left, of its share, what the flag's cohort does not
    explain there: through × (1 − in_cohort). front ×3.0 gives back a share
    under 40% of the regression, yet the cohort holds most of back's own.
    """
    front_deploy, rows = front_calls_back(t0, back_slowdown=lambda v: 3.0 if v == "on" else 1.0,
                                          front_slowdown=front_slowdown,
                                          back_from=t0 - timedelta(minutes=10))  # fmt: skip
    change = stock_change(t0)
    back_deploy = Deployment.objects.create(service="back", version="b2", previous_version="b1",
                                            started_at=t0 - timedelta(minutes=10))  # fmt: skip
    regression = front_regression(t0)
    recorded = suspects.record_for_deploy(front_deploy, regression)
    by_suspect = {(s.suspect_kind, s.suspect_id or s.suspect_change_id): s for s in recorded}
    flag, back = by_suspect[("flag", change.pk)], by_suspect[("deploy", back_deploy.pk)]
    through = back_time_share(rows, regression, t0)
    in_cohort = back_cohort_shares(rows, regression, t0)["on"]
    assert in_cohort > 0.9  # the scenario is what it says
    assert flag.score == pytest.approx(through * in_cohort + 0.01, abs=1e-3)
    # A change 10 minutes before the onset: a tie-break of 0.01 × (1 − 10/120).
    assert back.score == pytest.approx(through * (1 - in_cohort) + 0.01 * (1 - 10 / 120),
                                       abs=1e-3)  # fmt: skip
    assert flag.rank < back.rank
    assert back.evidence.startswith(
        f"The regression on front {PAGE} began at {t0:%H:%M} UTC (a change-point in its "
        f"latency); {through:.0%} of its extra errors or time is in child spans served by "
        f"back, which deployed b2 10 min before the regression began; {in_cohort:.0%} of "
        f"back's extra time is in a flag cohort whose change began it, which leaves this deploy"
    )
    # front's clean deploy is still left what back does not explain.
    own = by_suspect[("deploy", front_deploy.pk)]
    assert own.score == pytest.approx(1 - through + 0.01 * (1 - 20 / 120), abs=1e-3)


def test_a_flag_below_chains_the_share_of_the_same_metric(t0):
    """From t0, 3% of requests fail in back, whatever the flag; stock-cache=on is 3× slower.

    Every extra error is under back (its error share is 1), but the onset is a
    change in latency: the flag's share below is back's share of the extra
    time, counted by hand, not the larger error share.
    """
    front_deploy, rows = front_calls_back(t0, back_slowdown=lambda v: 3.0 if v == "on" else 1.0,
                                          back_error_rate=0.03, seed=11)  # fmt: skip
    change = stock_change(t0)
    regression = front_regression(t0)
    recorded = suspects.record_for_deploy(front_deploy, regression)
    [flag] = [s for s in recorded if s.suspect_change_id == change.pk]
    assert flag.onset_at == t0
    through = back_time_share(rows, regression, t0)
    in_cohort = back_cohort_shares(rows, regression, t0)["on"]
    assert through < 0.95 and in_cohort > 0.9  # well apart from the error share, 1
    assert flag.evidence.startswith(
        f"{through:.0%} of the extra time on front {PAGE} is in back, and {in_cohort:.0%} of "
        f"that in requests with {STOCK}=on;"
    )
    assert flag.score == pytest.approx(through * in_cohort + 0.01, abs=1e-3)
