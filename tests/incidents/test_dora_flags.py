"""DORA's flag-change figures, computed by hand on a built history of flag changes.

checkout evaluates new-pay and dark-mode; the 30 days before N (d = days, h = hours):

| change | flag      | at        | shares before → after     | what became of it              |
|--------|-----------|-----------|---------------------------|--------------------------------|
| f1     | new-pay   | N-20d     | off 100% → on 10%         | passed                         |
| f2     | new-pay   | N-19d     | on 10% → on 50%           | failed its verdict; reverted   |
| f3     | new-pay   | N-19d+1h  | on 50% → on 10%           | the revert of f2: passed       |
| f4     | dark-mode | N-10d     | a 100% → a 50%, b 50%     | top suspect of incident I2     |
| f5     | search-ui | N-3d      | (search only)             | not checkout's                 |
| f6     | new-pay   | N-40d     |                           | outside the period             |

- Releases: f1 f2 f3 f4 = 4 flag changes; 4/30 a day, 28/30 a week.
- Failed: f2 (its verdict, and f3 put the shares back to f2's before: 10% / 90%)
  and f4 (blamed by I2) = 2 of 4 = 0.5; one by verdict, one reverted, one blamed.
  f1 is not reverted: f2 moved on to 50%, not back to off 100%.
- Weekly, counted back from N: f1 (20 d), f2 (19 d) and f3 (18 d 23 h) fall in
  bucket 2 (14 to 21 days back), f4 (10 d) in bucket 1: oldest first
  [0, 0, 3, 1, 0] changes, [0, 0, 1, 1, 0] failed.
- Every service: f5 joins, 5 changes, 2 failed.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from flags.models import ChangeSource, FlagChange
from incidents import delivery, dora
from incidents.models import Incident, Status
from tests.helpers import bearer

pytestmark = pytest.mark.django_db
D, H = timedelta(days=1), timedelta(hours=1)


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


def change(flag, at, *, before, rollout=None, after=None, services=("checkout",), **fields):
    return FlagChange.objects.create(
        flag=flag, at=at, services=list(services), environment="production",
        shares_before=before, rollout=rollout or {}, shares_after=after or {},
        source=ChangeSource.DETECTED if after else ChangeSource.API, **fields,
    )  # fmt: skip


@pytest.fixture
def flag_history(now):
    f = {}
    f["f1"] = change("new-pay", now - 20 * D, before={"off": 1.0}, rollout={"on": 10, "off": 90},
                     verdict="pass")  # fmt: skip
    f["f2"] = change("new-pay", now - 19 * D, before={"on": 0.1, "off": 0.9},
                     rollout={"on": 50, "off": 50}, verdict="fail")  # fmt: skip
    f["f3"] = change("new-pay", now - 19 * D + H, before={"on": 0.5, "off": 0.5},
                     rollout={"on": 10, "off": 90}, verdict="pass")  # fmt: skip
    f["f4"] = change("dark-mode", now - 10 * D, before={"a": 1.0}, after={"a": 0.5, "b": 0.5})
    f["f5"] = change("search-ui", now - 3 * D, before={"x": 1.0}, services=("search",))
    f["f6"] = change("new-pay", now - 40 * D, before={"off": 1.0})
    Incident.objects.create(
        title="I2", services=["checkout"], status=Status.RESOLVED, top_flag_change=f["f4"],
        started_at=now - 10 * D, detected_at=now - 10 * D + H, resolved_at=now - 10 * D + 2 * H,
        last_signal_at=now - 10 * D + H,
    )  # fmt: skip
    return f


def test_the_flag_change_figures_match_the_hand_computation(flag_history, now):
    figures = delivery.metrics(days=30, now=now, service="checkout")["flag_changes"]
    assert figures == {
        "changes": 4, "per_day": pytest.approx(4 / 30), "per_week": pytest.approx(28 / 30),
        "failed": 2, "rate": 0.5, "failed_verdict": 1, "reverted": 1, "blamed": 1,
    }  # fmt: skip


def test_the_weekly_trend_counts_flag_changes_next_to_deploys(flag_history, now):
    weekly = delivery.metrics(days=30, now=now, service="checkout")["weekly"]
    assert [w["flag_changes"] for w in weekly] == [0, 0, 3, 1, 0]
    assert [w["flag_changes_failed"] for w in weekly] == [0, 0, 1, 1, 0]
    # Flag changes are releases next to deploys, never counted as deploys.
    assert [w["deploys"] for w in weekly] == [0, 0, 0, 0, 0]


def test_every_service_counts_every_flag_change(flag_history, now):
    figures = delivery.metrics(days=30, now=now)["flag_changes"]
    assert (figures["changes"], figures["failed"]) == (5, 2)


def test_the_api_serves_the_flag_change_figures(client, flag_history, make_token):
    body = client.get("/api/v1/dora", {"service": "checkout", "days": 30},
                      headers=bearer(make_token("read"))).json()  # fmt: skip
    assert body["flag_changes"]["changes"] == 4 and body["flag_changes"]["rate"] == 0.5
    assert body["deployment_frequency"]["deploys"] == 0


def test_a_revert_is_the_next_change_putting_every_share_back():
    assert dora.reverted({"on": 0.1, "off": 0.9}, {"on": 0.12, "off": 0.88})
    assert not dora.reverted({"on": 0.1, "off": 0.9}, {"on": 0.5, "off": 0.5})
    # A cohort that appeared is a share of 0 before.
    assert not dora.reverted({"off": 1.0}, {"off": 0.9, "on": 0.1})
    assert not dora.reverted({}, {"off": 1.0}) and not dora.reverted({"off": 1.0}, None)
