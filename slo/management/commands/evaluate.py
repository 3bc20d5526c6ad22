"""Run once, synchronously, everything beat runs periodically: for cron and tests."""

from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string

from slo import evaluation, minutes
from telemetry import rollups
from telemetry.tasks import enforce_retention


def _evaluate_slos() -> str:
    report = evaluation.evaluate_all()
    minutes.prune()
    return (
        f"{report.evaluated} SLO(s) evaluated, {len(report.fired)} alert(s) fired, "
        f"{len(report.resolved)} resolved, {report.sent} notification(s) sent"
    )


# Every periodic job, in the order data flows: spans → rollups → SLOs → the
# analyses downstream of them. A later app adds its job at the end.
PERIODIC_JOBS = [
    ("retention", lambda: f"{enforce_retention()} span partition(s) dropped"),
    ("rollups", lambda: f"{rollups.rollup_pending()} service-minute(s) recomputed"),
    ("slo evaluation", _evaluate_slos),
    # By name: slo must not import the deployments app downstream of it.
    ("deploy analysis", lambda: import_string("deployments.jobs.run_once")()),
]


class Command(BaseCommand):
    help = "Run the rollups, SLO evaluation and alerting (and every periodic job) once."

    def handle(self, *args, **options):
        for name, job in PERIODIC_JOBS:
            self.stdout.write(f"{name}: {job()}")
