"""Flag changes: posts and detections merge into one change; detection finds real shifts only."""

from datetime import timedelta

import pytest
from django.utils import timezone

from flags import changes
from flags.models import ChangeSource, FlagChange, FlagSettings
from telemetry import ingest
from tests.flags.factories import evaluation_traffic

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now().replace(second=0, microsecond=0)


def rollout(now, *, widen_at_minute: int | None, total_minutes: int = 20, seed: int = 1):
    """10% on, widened to 50% at the given minute (or never)."""
    start = now - timedelta(minutes=total_minutes)
    split = total_minutes if widen_at_minute is None else widen_at_minute
    ingest.store_rows(evaluation_traffic("new-checkout", start, minutes=split, per_minute=120,
                             shares={"on": 0.1, "off": 0.9}, seed=seed))  # fmt: skip
    if split < total_minutes:
        ingest.store_rows(evaluation_traffic("new-checkout", start + timedelta(minutes=split),
                                 minutes=total_minutes - split, per_minute=120,
                                 shares={"on": 0.5, "off": 0.5}, seed=seed + 1))  # fmt: skip
    return start


class TestDetection:
    def test_a_widened_rollout_is_detected_at_its_minute(self, now):
        start = rollout(now, widen_at_minute=17)
        [change] = changes.detect_changes(now=now)
        assert change.source == ChangeSource.DETECTED
        assert change.at == start + timedelta(minutes=17)
        assert change.detected_at == change.at
        assert change.shares_before["on"] == pytest.approx(0.1, abs=0.03)
        assert change.shares_after["on"] == pytest.approx(0.5, abs=0.06)
        assert change.detection_p_value < 1e-6
        assert change.services == ["web"]
        assert change.control == "off"
        assert change.verdict == "pending"
        assert change.next_look == 1

    def test_a_steady_rollout_is_no_change(self, now):
        rollout(now, widen_at_minute=None)
        assert changes.detect_changes(now=now) == []

    def test_a_shift_is_recorded_once(self, now):
        rollout(now, widen_at_minute=17)
        assert len(changes.detect_changes(now=now)) == 1
        assert changes.detect_changes(now=now + timedelta(minutes=1)) == []
        assert FlagChange.objects.count() == 1

    def test_a_flag_that_starts_being_evaluated(self, now):
        ingest.store_rows(evaluation_traffic("dark-launch", now - timedelta(minutes=3), minutes=3,
                                 per_minute=60, shares={"on": 1.0}))  # fmt: skip
        [change] = changes.detect_changes(now=now)
        assert change.description == "started being evaluated"


class TestMerging:
    def test_a_post_then_the_detection_is_one_change(self, now):
        start = rollout(now, widen_at_minute=17)
        posted_at = start + timedelta(minutes=17, seconds=5)
        posted, created = changes.record_change(
            {"flag": "new-checkout", "at": posted_at, "actor": "ana", "rollout": {"on": 50}},
            source=ChangeSource.API,
        )
        assert created
        assert changes.detect_changes(now=now) == []
        posted.refresh_from_db()
        assert (posted.source, posted.actor, posted.at) == ("api", "ana", posted_at)
        assert posted.detected_at == start + timedelta(minutes=17)
        assert posted.shares_after["on"] == pytest.approx(0.5, abs=0.06)
        assert FlagChange.objects.count() == 1

    def test_the_detection_then_a_post_is_one_change(self, now):
        start = rollout(now, widen_at_minute=17)
        [detected] = changes.detect_changes(now=now)
        posted_at = start + timedelta(minutes=16, seconds=50)
        change, created = changes.record_change(
            {"flag": "new-checkout", "at": posted_at, "description": "widen to 50%"},
            source=ChangeSource.UNLEASH,
        )
        assert not created and change.pk == detected.pk
        assert (change.source, change.at, change.description) == (
            "unleash", posted_at, "widen to 50%",
        )  # fmt: skip
        assert change.detected_at == start + timedelta(minutes=17)

    def test_a_retried_post_updates_its_change(self, now):
        fields = {"flag": "f", "at": now, "actor": "ci"}
        first, _ = changes.record_change(fields, source=ChangeSource.API)
        again, created = changes.record_change({**fields, "url": "https://ci/1"},
                                               source=ChangeSource.API)  # fmt: skip
        assert not created and again.pk == first.pk and again.url == "https://ci/1"

    def test_the_next_step_of_a_rollout_is_a_new_change(self, now):
        changes.record_change({"flag": "f", "at": now}, source=ChangeSource.API)
        _, created = changes.record_change({"flag": "f", "at": now + timedelta(minutes=3)},
                                           source=ChangeSource.API)  # fmt: skip
        assert created


class TestControl:
    def test_the_override_is_used(self, now):
        rollout(now, widen_at_minute=None)
        FlagSettings.objects.create(flag="new-checkout", control="on")
        change, _ = changes.record_change({"flag": "new-checkout", "at": now},
                                          source=ChangeSource.API)  # fmt: skip
        assert (change.control, change.control_reason) == ("on", "set for this flag")

    def test_services_and_environment_default_to_the_spans(self, now):
        rollout(now, widen_at_minute=None)
        change, _ = changes.record_change({"flag": "new-checkout"}, source=ChangeSource.API)
        assert change.services == ["web"]
        assert change.environment == "production"
