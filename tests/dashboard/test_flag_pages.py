"""The Flags page, a flag's page, flag changes on other pages, through the Django test client.

Figures are worked out by hand from tests/dashboard/flag_factories.py: checkout
serves 6 requests a minute over minutes -62..-3 of `now`; from the change (-32)
two of each minute's six are `on` (60 in all, plus the one request of the
flag trace at -4), and one of those two fails with FlagBoom (30 errors); the
other four (120 in all) and the 180 before the change are `off`.
"""

from datetime import timedelta

import pytest
from django.urls import reverse

from dashboard import figures, pages, traces
from dashboard import flags as flag_pages
from tests.dashboard.factories import XSS
from tests.dashboard.flag_factories import FLAG, build_flag_world


@pytest.fixture
def flag_world(world):
    return build_flag_world(world)


def _flag_json(client, flag, **query):
    response = client.get(reverse("dashboard:flag-json", args=[flag]), query)
    assert response.status_code == 200
    return response.json()


def test_every_flag_page_answers_and_needs_a_login(client, viewer, world, flag_world):
    urls = [
        reverse("dashboard:flags"), reverse("dashboard:flags-json"),
        reverse("dashboard:flag", args=[FLAG]), reverse("dashboard:flag-json", args=[FLAG]),
        reverse("dashboard:flag", args=[XSS]),
    ]  # fmt: skip
    for url in urls:
        response = client.get(url)
        assert response.status_code == (401 if url.endswith(".json") else 302), url
    client.force_login(viewer)
    for url in urls:
        for query in ("", "?range=15m", "?range=24h", "?service=payments", "?change=x"):
            assert client.get(url + query).status_code == 200, url + query
    assert client.get(reverse("dashboard:flag", args=["no-such-flag"])).status_code == 404
    assert client.get(reverse("dashboard:flag-json", args=["no-such-flag"])).status_code == 404


def test_the_flags_page_lists_failing_rollouts_first(viewer_client, world, flag_world):
    rows = viewer_client.get(reverse("dashboard:flags-json")).json()["flags"]
    assert [row["flag"] for row in rows] == [FLAG, XSS]
    checkout = rows[0]
    assert checkout["verdict"] == "fail"
    assert [s["name"] for s in checkout["services"]] == ["checkout"]
    assert checkout["variants"] == ["off", "on"]
    assert sum(checkout["shares"].values()) == pytest.approx(100, abs=0.02)
    assert checkout["last_change"]["id"] == flag_world.change.pk
    assert rows[1]["verdict"] == "pending" and rows[1]["variants"] == [XSS]


def test_the_flag_page_shows_shares_and_each_cohorts_traffic(viewer_client, world, flag_world):
    data = _flag_json(viewer_client, FLAG, range="1h")
    assert data["service"] == "checkout"
    shares = data["shares"]
    assert shares["cohorts"] == ["off", "on"] and len(shares["points"]) == 60
    # The 1h range is minutes -62..-3: point 30 is the change's minute.
    before, after = shares["points"][0], shares["points"][30]
    assert before["shares"] == {"off": 100.0, "on": 0.0} and before["evaluations"] == 6
    assert after["shares"] == {"off": 66.667, "on": 33.333}
    cohorts = {series["cohort"]: series["points"] for series in data["cohorts"]}
    on = cohorts["on"][30]
    assert on["rate"] == round(2 / 60, 4) and on["error_pct"] == 50.0
    assert on["p95_ms"] == pytest.approx(60.0)
    # Before its change the on cohort did not exist: no rate, as for a service not yet serving.
    assert cohorts["on"][0]["rate"] is None and cohorts["on"][0]["error_pct"] is None
    off = cohorts["off"][30]
    assert off["rate"] == round(4 / 60, 4) and off["error_pct"] == 0.0
    assert off["p50_ms"] == pytest.approx(20.0)
    assert [m["id"] for m in data["markers"]] == [flag_world.change.pk]
    assert [d["version"] for d in data["deploys"]] == ["2.0.0"]


def test_the_flag_page_tells_the_changes_verdict_findings_errors_and_budget(
    viewer_client, world, flag_world
):
    change = _flag_json(viewer_client, FLAG)["change"]
    assert change["id"] == flag_world.change.pk and change["verdict"] == "fail"
    assert change["control"] == "off" and change["minute"] == 15
    [finding] = change["findings"]
    assert (finding["variant"], finding["metric"], finding["route"]) == (
        "on", "error_rate", "(whole service)")  # fmt: skip
    assert (finding["baseline"], finding["candidate"], finding["unit"]) == (0.0, 50.0, "%")
    [new_error] = change["new_errors"]
    assert (new_error["variant"], new_error["error_type"], new_error["count"]) == (
        "on", "FlagBoom", 30)  # fmt: skip
    assert len(new_error["traces"]) == 3 and all(len(t) == 32 for t in new_error["traces"])
    budget = {row["variant"]: row for row in change["budget_impact"]}
    assert budget["on"]["slo"] == "checkout-availability"
    assert (budget["on"]["requests"], budget["on"]["bad"]) == (61, 30)
    assert (budget["off"]["requests"], budget["off"]["bad"]) == (120, 0)
    assert budget["on"]["budget_consumed_pct"] == round(
        100 * 30 / budget["on"]["budget_total"], 1)  # fmt: skip


def test_another_change_can_be_chosen(viewer_client, world, flag_world):
    data = _flag_json(viewer_client, XSS, change=str(flag_world.hostile_change.pk))
    assert data["change"]["id"] == flag_world.hostile_change.pk
    assert data["service"] == "payments"
    assert data["change"]["new_errors"] == [] and data["change"]["findings"] == []


def test_the_service_page_marks_flag_changes_next_to_deploys(world, flag_world):
    data = pages.service_page("checkout", figures.RANGES["6h"], now=world.now)
    assert [c["flag"] for c in data["flag_changes"]] == [FLAG]
    assert data["flag_changes"][0]["url"].endswith(f"?change={flag_world.change.pk}")
    payments = pages.service_page("payments", figures.RANGES["6h"], now=world.now)
    assert [c["flag"] for c in payments["flag_changes"]] == [XSS]


def test_the_timeline_holds_deploys_and_flag_changes_filterable_by_kind(world, flag_world):
    def timeline(**filters):
        data = pages.deploys_page(now=world.now, period="1h", **filters)
        return [(row["kind"], row.get("version") or row.get("flag")) for row in data["changes"]]

    # Within the hour: the XSS flag change (-12), the failed deploy (-30), new-checkout (-32).
    assert timeline() == [("flag", XSS), ("deploy", "2.0.0"), ("flag", FLAG)]
    assert timeline(kind="flag") == [("flag", XSS), ("flag", FLAG)]
    assert timeline(kind="deploy") == [("deploy", "2.0.0")]
    assert timeline(service="payments") == [("flag", XSS)]
    assert timeline(verdict="fail") == [("deploy", "2.0.0"), ("flag", FLAG)]


def test_the_timeline_page_filters_by_kind(viewer_client, world, flag_world):
    body = viewer_client.get(reverse("dashboard:deploys") + "?kind=flag").content.decode()
    assert 'value="flag" selected' in body
    data = viewer_client.get(reverse("dashboard:deploys-json") + "?kind=flag&period=1h").json()
    assert {row["kind"] for row in data["changes"]} == {"flag"}
    assert data["deploys"] == []


def test_a_trace_shows_the_flags_each_request_evaluated(viewer_client, world, flag_world):
    waterfall = traces.waterfall(bytes.fromhex(flag_world.trace_id))
    assert sorted((row["flag"], row["cohort"]) for row in waterfall["flags"]) == [
        (XSS, XSS), (FLAG, "on")]  # fmt: skip
    [span] = waterfall["spans"]
    assert len(span["flags"]) == 2 and span["flags"][0]["request_span_id"] == span["span_id"]
    body = viewer_client.get(reverse("dashboard:trace", args=[flag_world.trace_id])).content
    assert b"Flags evaluated" in body and FLAG.encode() in body


@pytest.mark.parametrize("page", ["flags", "flag", "trace", "deploys"])
def test_a_hostile_flag_key_and_variant_never_reach_a_page_unescaped(
    viewer_client, world, flag_world, page
):
    url = {
        "flags": reverse("dashboard:flags"),
        "flag": reverse("dashboard:flag", args=[XSS]),
        "trace": reverse("dashboard:trace", args=[flag_world.trace_id]),
        "deploys": reverse("dashboard:deploys"),
    }[page]
    body = viewer_client.get(url).content.decode()
    assert "<script>alert(1)" not in body
    if page in ("flag", "trace"):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_the_flags_page_reads_in_queries_that_do_not_grow_with_the_flags(
    viewer_client, world, flag_world
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from flags.models import FlagChange

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get(reverse("dashboard:flags-json")).status_code == 200
        return len(captured)

    before = queries()
    for name in ("a", "b", "c"):
        FlagChange.objects.create(flag=name, services=["checkout"], at=world.now)
    assert queries() == before


def test_the_deploy_page_marks_the_services_flag_changes_around_it(world, flag_world):
    data = pages.deploy_page(world.failed_deploy, now=world.now)
    # The deploy at -30, the new-checkout change at -32: inside the charts' hour before.
    assert [c["id"] for c in data["flag_changes"]] == [flag_world.change.pk]


def test_a_cohort_is_rated_over_the_time_it_existed_in_its_first_step(world, flag_world):
    change_at = flag_world.change.at
    # A step the change falls inside, not on its first minute.
    steps = (timedelta(minutes=m) for m in (10, 7, 11))
    step = next(step for step in steps if figures.floor(change_at, step) != change_at)
    first = figures.floor(change_at, step)
    series = flag_pages.cohort_series(FLAG, "checkout", first, first + 2 * step, step)
    on = {s["cohort"]: s["points"] for s in series}["on"]
    # From the change on, the on cohort serves 2 requests a minute (tests/dashboard/
    # flag_factories.py): 2/60 per second, in the step it began in as in the next one.
    assert on[0]["rate"] == on[1]["rate"] == round(2 / 60, 4)
