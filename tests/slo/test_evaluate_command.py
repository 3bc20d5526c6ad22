import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from monoenv_site.celery import app as celery_app
from monoenv_site.management.commands.evaluate import PERIODIC_JOBS
from slo.models import Alert, SLOMinute
from telemetry.models import PendingMinute, RollupMinute
from tests.slo.factories import make_slo, store_spans

pytestmark = pytest.mark.django_db


def test_evaluate_runs_rollups_slo_evaluation_and_alerting_once():
    slo = make_slo()
    minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=3)
    for offset in range(3):
        store_spans(minute + timedelta(minutes=offset), 30, errors=15)
    out = io.StringIO()

    call_command("evaluate", stdout=out)

    assert not PendingMinute.objects.exists()
    assert RollupMinute.objects.count() == 3
    assert sorted(SLOMinute.objects.filter(slo=slo).values_list("good", "total")) == [(15, 30)] * 3
    assert Alert.objects.open().pages().filter(slo=slo).exists()
    assert "1 SLO(s) evaluated" in out.getvalue()
    assert [name for name, _ in PERIODIC_JOBS][:3] == ["retention", "rollups", "slo evaluation"]


def test_beat_runs_the_rollup_and_the_evaluation_every_minute():
    celery_app.loader.import_default_modules()
    schedule = {
        entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }

    for task in ("telemetry.tasks.rollup_pending", "slo.tasks.dispatch_evaluations"):
        assert schedule[task] == timedelta(minutes=1)
        assert task in celery_app.tasks
