"""Run once, synchronously, everything beat runs periodically: for cron and tests.

It lives with the project, not in an app, because it calls every app: apps
only know the ones below them, the project knows them all.
"""

from django.core.management.base import BaseCommand

from deployments import jobs as deploy_jobs
from flags import jobs as flag_jobs
from incidents import jobs as incident_jobs
from notifications import outbox
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


def _incidents(report) -> str:
    return (
        f"{len(report.opened)} incident(s) opened, {len(report.joined)} signal(s) joined, "
        f"{len(report.to_refresh)} refreshed, {report.outcomes} delivery outcome(s) updated"
    )


# Every periodic job, in the order data flows: spans → rollups → SLOs → the
# deploy analysis that reads them → flag rollouts (attribution, detected
# changes, per-variant looks) → the incidents opened from all of them → the
# notifications all of them queued.
PERIODIC_JOBS = [
    ("retention", lambda: f"{enforce_retention()} span partition(s) dropped"),
    ("rollups", lambda: f"{rollups.rollup_pending()} service-minute(s) recomputed"),
    ("slo evaluation", _evaluate_slos),
    ("deploy analysis", deploy_jobs.run_once),
    ("flags", flag_jobs.run_once),
    ("incidents", lambda: _incidents(incident_jobs.run_once())),
    ("notifications", lambda: f"{outbox.send_due()} notification(s) sent"),
]


class Command(BaseCommand):
    help = (
        "Run the rollups, SLO evaluation, deploy analysis, flag rollouts, incidents and "
        "notifications once."
    )

    def handle(self, *args, **options):
        for name, job in PERIODIC_JOBS:
            self.stdout.write(f"{name}: {job()}")
