"""Every DORA figure, computed by hand on a built history of deploys, rollbacks and incidents.

checkout, production, the 30 days before N (d = days, h = hours, m = minutes):

| deploy | started      | finished   | lead (commit→finish) | what became of it                 |
|--------|--------------|------------|----------------------|-----------------------------------|
| d1     | N-20d        | +10m       | 2 h = 7200 s         | passed                            |
| d2     | N-15d        | +10m       | 1 d = 86400 s        | failed its verdict, rolled back   |
| d3     | N-15d+1h     | +5m        | (no commit time)     | the rollback of d2: rework        |
| d4     | N-10d        | +10m       | 3 h = 10800 s        | top suspect of incident I1        |
| d5     | N-10d+1h30m  | +10m       | 1 h = 3600 s         | fix deployed during I1: rework    |
| d6     | N-5d         | (failed)   |                      | pipeline failed: never delivered  |
| d7     | N-40d        |            |                      | outside the period                |
| d8     | N-2d         | +10m       | 30 m = 1800 s        | pending                           |

I1: detected N-10d+30m, mitigated N-10d+2h, resolved N-10d+3h.

- Frequency: d1 d2 d3 d4 d5 d8 = 6 deploys; 6/30 = 0.2 a day, 1.4 a week: high.
- Lead time: [1800, 3600, 7200, 10800, 86400]: median 7200; p90 at rank 0.9 × 4 = 3.6,
  10800 + 0.6 × (86400 - 10800) = 56160. 5 with a commit time, 1 without. Elite (< 1 day).
- Change fail rate: d2 and d4 of 6 = 1/3: medium (between 20% and 40%).
- Recovery: d2, to d3's finish at 1h05m = 3900 s; d4, to the earlier of I1's mitigation
  (2 h) and d5's finish (1h40m = 6000 s) = 6000 s. Median 4950, p90 3900 + 0.9 × 2100 = 5790:
  high (under a day, over an hour).
- Rework: d3 and d5 of 6 = 1/3.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.models import Deployment, DeployStatus, Verdict
from incidents import delivery, dora
from incidents.models import ChangeOutcome, Incident, Status
from tests.helpers import bearer

pytestmark = pytest.mark.django_db
D, H, MIN = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


def make(service, version, started, *, finish=10 * MIN, lead=None, **fields):
    values = {"status": DeployStatus.SUCCEEDED, "verdict": Verdict.PASS}
    values.update(fields)
    finished = started + finish
    return Deployment.objects.create(
        service=service, version=version, environment="production", started_at=started,
        finished_at=finished, commit_time=finished - lead if lead else None, **values,
    )  # fmt: skip


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def history(now):
    d = {}
    d["d1"] = make("checkout", "1", now - 20 * D, lead=2 * H)
    d["d2"] = make("checkout", "2", now - 15 * D, lead=D, verdict=Verdict.FAIL,
                   status=DeployStatus.ROLLED_BACK)  # fmt: skip
    d["d3"] = make("checkout", "1", now - 15 * D + H, finish=5 * MIN, rollback_of=d["d2"])
    d["d4"] = make("checkout", "3", now - 10 * D, lead=3 * H)
    d["d5"] = make("checkout", "4", now - 10 * D + 90 * MIN, lead=H)
    d["d6"] = make("checkout", "5", now - 5 * D, lead=H, status=DeployStatus.FAILED)
    d["d7"] = make("checkout", "0", now - 40 * D, lead=H)
    d["d8"] = make("checkout", "6", now - 2 * D, lead=30 * MIN, verdict=Verdict.PENDING)
    d["d9"] = make("search", "9", now - 3 * D)
    Incident.objects.create(
        title="I1", services=["checkout"], status=Status.RESOLVED, top_suspect=d["d4"],
        started_at=now - 10 * D + 5 * MIN, detected_at=now - 10 * D + 30 * MIN,
        mitigated_at=now - 10 * D + 2 * H, resolved_at=now - 10 * D + 3 * H,
        last_signal_at=now - 10 * D + 30 * MIN,
    )  # fmt: skip
    delivery.rebuild_all()
    return d


def test_every_figure_matches_the_hand_computation(history, now):
    got = delivery.metrics(days=30, now=now, service="checkout", environment="production")
    assert got["days"] == 30 and got["service"] == "checkout"
    assert got["deployment_frequency"] == {
        "deploys": 6, "per_day": pytest.approx(0.2), "per_week": pytest.approx(1.4),
        "level": "high",
    }  # fmt: skip
    assert got["lead_time"] == {
        "median_seconds": 7200, "p90_seconds": pytest.approx(56160),
        "deploys_with_commit_time": 5, "deploys_without_commit_time": 1, "level": "elite",
    }  # fmt: skip
    assert got["change_fail_rate"] == {
        "failed": 2, "deploys": 6, "rate": pytest.approx(1 / 3), "level": "medium"
    }
    assert got["recovery_time"] == {
        "median_seconds": 4950, "p90_seconds": pytest.approx(5790), "recoveries": 2,
        "unrecovered": 0, "level": "high",
    }  # fmt: skip
    assert got["rework_rate"] == {"rework": 2, "deploys": 6, "rate": pytest.approx(1 / 3)}


def test_the_outcomes_say_why_each_change_failed(history):
    outcome = {o.deployment_id: o for o in ChangeOutcome.objects.all()}
    assert outcome[history["d2"].pk].failed_because == "verdict,rollback"
    assert outcome[history["d4"].pk].failed_because == "incident"
    assert not outcome[history["d6"].pk].delivered
    assert outcome[history["d3"].pk].rework and outcome[history["d5"].pk].rework


def test_the_weekly_trend_has_seven_day_buckets_oldest_first(history, now):
    weekly = delivery.metrics(days=30, now=now, service="checkout")["weekly"]
    assert [w["deploys"] for w in weekly] == [0, 0, 3, 2, 1]
    assert [w["failed"] for w in weekly] == [0, 0, 1, 1, 0]
    assert weekly[-1]["end"] == now.isoformat() and weekly[0]["start"] == (now - 30 * D).isoformat()


def test_all_services_and_the_per_service_table(history, now):
    everything = delivery.metrics(days=30, now=now)
    assert everything["deployment_frequency"]["deploys"] == 7
    table = delivery.per_service(days=30, now=now)
    assert [(row["service"], row["deployment_frequency"]["deploys"]) for row in table] == [
        ("checkout", 6), ("search", 1),
    ]  # fmt: skip


def test_a_later_verdict_updates_the_outcome_incrementally(history, now):
    Deployment.objects.filter(pk=history["d8"].pk).update(verdict=Verdict.FAIL)
    delivery.refresh_recent(now=now)
    got = delivery.metrics(days=30, now=now, service="checkout")
    assert got["change_fail_rate"]["failed"] == 3
    assert got["recovery_time"]["unrecovered"] == 1


def test_the_api_answers_the_same_figures(client, history, make_token):
    token = make_token("read")
    body = client.get("/api/v1/dora?service=checkout&days=30", headers=bearer(token)).json()
    assert body["change_fail_rate"]["failed"] == 2 and body["lead_time"]["median_seconds"] == 7200
    assert len(body["weekly"]) == 5


@pytest.mark.parametrize(
    ("per_day", "level"), [(3, "elite"), (1, "elite"), (0.5, "high"), (1 / 7, "high"),
                           (0.1, "medium"), (1 / 30, "medium"), (0.01, "low")],
)  # fmt: skip
def test_frequency_levels_follow_the_dora_report(per_day, level):
    assert dora.frequency_level(per_day) == level


@pytest.mark.parametrize(
    ("seconds", "lead", "recovery"),
    [(600, "elite", "elite"), (7200, "elite", "high"), (2 * 86400, "high", "medium"),
     (20 * 86400, "medium", "low"), (60 * 86400, "low", "low"), (None, None, None)],
)  # fmt: skip
def test_time_levels_follow_the_dora_report(seconds, lead, recovery):
    assert dora.lead_time_level(seconds) == lead
    assert dora.recovery_level(seconds) == recovery


@pytest.mark.parametrize(
    ("rate", "level"), [(0.0, "elite"), (0.05, "elite"), (0.1, "high"), (0.2, "high"),
                        (0.3, "medium"), (0.41, "low"), (None, None)],
)  # fmt: skip
def test_fail_rate_levels_follow_the_dora_report(rate, level):
    assert dora.fail_rate_level(rate) == level
