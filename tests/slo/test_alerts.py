from datetime import timedelta

import pytest

from slo import evaluation, status
from slo.models import Alert, SLOMinute
from tests.slo.factories import add_minutes, make_slo

pytestmark = pytest.mark.django_db
MINUTE = timedelta(minutes=1)


def _traffic(slo, now, *, minutes, good, total, ago=timedelta(0)):
    """`minutes` minutes of counts ending at the last complete minute, shifted `ago`.

    Burn windows read complete minutes only: at 12:00:30 the 1h window is 11:00-11:59.
    """
    last = now.replace(second=0, microsecond=0) - MINUTE - ago
    add_minutes(slo, last - (minutes - 1) * MINUTE, minutes, good=good, total=total)


def _open_tiers(slo):
    return sorted(a.windows for a in Alert.objects.open().filter(slo=slo))


def test_a_fast_burn_pages(now):
    slo = make_slo(window="30d")
    _traffic(slo, now, minutes=3 * 1440 - 60, good=100, total=100, ago=60 * MINUTE)
    _traffic(slo, now, minutes=60, good=98, total=100)  # 2% errors: 20× for an hour

    report = evaluation.evaluate_all(now=now)

    assert _open_tiers(slo) == ["1h/5m"]
    (alert,) = report.fired
    assert alert.severity == "page"
    assert alert.long_burn_rate == pytest.approx(20) and alert.short_burn_rate == pytest.approx(20)
    assert alert.threshold == pytest.approx(14.4)
    assert alert.fired_at == now


def test_a_slow_burn_only_tickets(now):
    slo = make_slo(window="30d")
    _traffic(slo, now, minutes=2 * 1440, good=1_000, total=1_000, ago=1440 * MINUTE)
    _traffic(slo, now, minutes=1440, good=996, total=1_000)  # 0.4% errors: 4× for a day

    evaluation.evaluate_all(now=now)

    assert _open_tiers(slo) == ["1d/2h", "3d/6h"]
    assert set(Alert.objects.values_list("severity", flat=True)) == {"ticket"}


def test_a_low_traffic_service_does_not_page_on_one_error(now, settings):
    settings.MONOENV_SLO_MIN_EVENTS = 20
    slo = make_slo(window="30d")
    _traffic(slo, now, minutes=1, good=1, total=1, ago=30 * MINUTE)
    _traffic(slo, now, minutes=1, good=0, total=1, ago=2 * MINUTE)  # 50% errors, 2 requests

    evaluation.evaluate_all(now=now)

    assert not Alert.objects.exists()


def test_an_alert_resolves_and_keeps_its_times(now):
    slo = make_slo(window="30d")
    _traffic(slo, now, minutes=60, good=90, total=100)
    evaluation.evaluate_all(now=now)
    fired = set(Alert.objects.values_list("pk", flat=True))

    # The errors stop: every tier is calm, and after five calm minutes it resolves,
    # as of the first calm pass.
    SLOMinute.objects.filter(slo=slo).update(good=100)
    calm = now + 5 * MINUTE
    assert evaluation.evaluate_all(now=calm).resolved == []
    report = evaluation.evaluate_all(now=calm + 5 * MINUTE)

    assert set(a.pk for a in report.resolved) == fired
    for alert in Alert.objects.all():
        assert (alert.fired_at, alert.resolved_at) == (now, calm)


def test_a_burn_hovering_at_the_threshold_stays_one_alert(now):
    slo = make_slo(window="30d")
    _traffic(slo, now, minutes=3 * 1440 - 60, good=100, total=100, ago=60 * MINUTE)
    _traffic(slo, now, minutes=60, good=98, total=100)  # 20× for the last hour: 1h/5m pages
    evaluation.evaluate_all(now=now)
    (page,) = Alert.objects.open().filter(long_window=60 * MINUTE)

    # 12:00-12:02 are clean: the 5m window at 12:03:30 (11:58-12:02) is 2 × 2% of 500 = 8×.
    _traffic(slo, now + 3 * MINUTE, minutes=3, good=100, total=100)
    dip = evaluation.evaluate_all(now=now + 3 * MINUTE)
    page.refresh_from_db()
    assert page.calm_since == now + 3 * MINUTE
    # 12:03-12:05 fail at 10%: the 5m window at 12:06:30 (12:01-12:05) has 30 bad of 500,
    # 60×; the 1h window (11:06-12:05) 54 × 2 + 30 = 138 bad of 6,000, 23×.
    _traffic(slo, now + 6 * MINUTE, minutes=3, good=90, total=100)
    back = evaluation.evaluate_all(now=now + 6 * MINUTE)

    assert dip.resolved == back.resolved == back.fired == []
    page.refresh_from_db()
    assert (page.resolved_at, page.calm_since) == (None, None)
    assert page.short_burn_rate == pytest.approx(30 / 500 / 0.001)
    assert page.long_burn_rate == pytest.approx(138 / 6_000 / 0.001)


def test_an_alert_resolves_five_calm_minutes_after_the_calm_began(now):
    slo = make_slo(window="30d")
    _traffic(slo, now, minutes=60, good=90, total=100)
    evaluation.evaluate_all(now=now)
    SLOMinute.objects.filter(slo=slo).update(good=100)

    passes = [evaluation.evaluate_all(now=now + n * MINUTE) for n in range(1, 7)]

    # Calm from the pass at 12:01:30; five minutes later, at 12:06:30, it is over.
    assert [len(p.resolved) for p in passes] == [0, 0, 0, 0, 0, 4]
    assert set(Alert.objects.values_list("resolved_at", flat=True)) == {now + MINUTE}


def test_a_firing_alert_is_not_fired_again(now):
    slo = make_slo(window="30d")
    _traffic(slo, now, minutes=60, good=90, total=100)
    evaluation.evaluate_all(now=now)
    count = Alert.objects.count()

    report = evaluation.evaluate_all(now=now + MINUTE)

    assert report.fired == [] and Alert.objects.count() == count
    assert Alert.objects.filter(last_evaluated_at=now + MINUTE).count() == count


def test_another_worker_evaluating_the_same_slo_skips_it(now):
    slo = make_slo(window="30d")
    _traffic(slo, now, minutes=60, good=90, total=100)
    stale_copy = type(slo).objects.get(pk=slo.pk)
    evaluation.evaluate(slo, now=now)

    report = evaluation.evaluate(stale_copy, now=now)

    assert report.evaluated == 0


def test_a_broken_slo_does_not_stop_the_pass(now, monkeypatch):
    broken = make_slo(name="broken", window="30d")
    healthy = make_slo(name="healthy", window="30d")
    _traffic(healthy, now, minutes=60, good=90, total=100)
    real_judge = evaluation._judge_tiers

    def judge(slo, **kwargs):
        if slo.pk == broken.pk:
            raise RuntimeError("boom")
        return real_judge(slo, **kwargs)

    monkeypatch.setattr(evaluation, "_judge_tiers", judge)
    report = evaluation.evaluate_all(now=now)

    assert report.evaluated == 1
    assert Alert.objects.filter(slo=healthy).exists()


@pytest.mark.parametrize(
    ("window", "tiers"),
    [
        ("1h", ["1m/1m", "2m/2m", "3m/3m", "6m/5m"]),
        ("2h", ["13m/5m", "1m/1m", "2m/2m", "4m/4m"]),
    ],
)
def test_hour_long_slos_page_at_high_burn_without_a_second_alert_per_tier(now, window, tiers):
    slo = make_slo(window=window)
    _traffic(slo, now, minutes=180, good=100, total=100, ago=15 * MINUTE)
    _traffic(slo, now, minutes=15, good=50, total=100)  # 50% errors: 500× a 99.9% objective

    first = evaluation.evaluate_all(now=now)
    _traffic(slo, now + MINUTE, minutes=1, good=50, total=100)  # the minute just completed
    second = evaluation.evaluate_all(now=now + MINUTE)

    assert first.evaluated == second.evaluated == 1  # no rolled-back pass
    assert _open_tiers(slo) == tiers
    assert Alert.objects.filter(slo=slo, severity="page").count() == 2
    assert second.fired == []


def test_a_seven_day_slo_pages_on_five_complete_minutes_whatever_the_minute_just_begun(now):
    # 7 d ÷ 28 d of the Workbook's 1h/5m is 15m, and its short window stays 5m (not 1m).
    slo = make_slo(window="7d")
    _traffic(slo, now, minutes=720, good=100, total=100, ago=15 * MINUTE)
    _traffic(slo, now, minutes=15, good=50, total=100)  # 50% errors: 500× a 99.9% objective
    add_minutes(slo, now.replace(second=0), 1, good=3, total=3)  # 12:00, thirty seconds old

    evaluation.evaluate_all(now=now)

    (page,) = Alert.objects.open().filter(slo=slo, severity="page", long_window=15 * MINUTE)
    assert page.short_window == 5 * MINUTE
    # 5 complete minutes, 11:55-11:59, at 50% bad; the three good events of 12:00 are not read.
    assert page.short_burn_rate == pytest.approx(0.5 / 0.001)


def test_errors_in_the_minute_under_way_wait_for_it_to_complete(now):
    slo = make_slo(window="7d")
    _traffic(slo, now, minutes=720, good=100, total=100)
    add_minutes(slo, now.replace(second=0), 1, good=0, total=100)  # 12:00, all failing so far

    assert evaluation.evaluate_all(now=now).fired == []

    # At 12:01:30 the 12:00 minute is complete: 15m window 11:46-12:00, 5m window 11:56-12:00.
    fired = evaluation.evaluate_all(now=now + MINUTE).fired
    page = next(alert for alert in fired if alert.long_window == 15 * MINUTE)
    assert page.long_burn_rate == pytest.approx(100 / 1_500 / 0.001)
    assert page.short_burn_rate == pytest.approx(100 / 500 / 0.001)


def test_the_status_gives_the_worst_firing_tier_with_its_current_burn(now):
    slo = make_slo(window="30d")
    _traffic(slo, now, minutes=3 * 1440, good=100, total=100, ago=60 * MINUTE)
    _traffic(slo, now, minutes=60, good=90, total=100)  # 10% errors: 100×
    evaluation.evaluate_all(now=now)
    assert _open_tiers(slo) == ["1d/2h", "1h/5m", "3d/6h", "6h/30m"]

    # The next minute burns harder; the status reads it, whatever the alert last stored.
    later = now + MINUTE
    _traffic(slo, later, minutes=1, good=0, total=100)
    found = status.status(slo, now=later, history=False)

    worst = found.worst_firing_tier
    assert (worst.severity, worst.windows) == ("page", "1h/5m")
    # 1h window at 12:01:30: complete minutes 11:01-12:00, 59 at 10% bad and one at 100%.
    assert worst.long_burn_rate == pytest.approx((59 * 10 + 100) / 6_000 / 0.001)
    assert worst.alert.long_burn_rate == pytest.approx(100)
    assert [t.windows for t in found.firing_tiers] == ["1h/5m", "6h/30m", "1d/2h", "3d/6h"]
