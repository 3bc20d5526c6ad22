from django.core.management.base import BaseCommand

from incidents import delivery, jobs


class Command(BaseCommand):
    help = "Run the incident poll once: open, join and refresh incidents, and delivery outcomes."

    def add_arguments(self, parser):
        parser.add_argument(
            "--rebuild-outcomes", action="store_true",
            help="Recompute the delivery outcome of every deploy, not only recent ones.",
        )  # fmt: skip

    def handle(self, *args, rebuild_outcomes: bool, **options):
        report = jobs.run_once()
        rebuilt = delivery.rebuild_all() if rebuild_outcomes else 0
        self.stdout.write(
            f"{len(report.opened)} incident(s) opened, {len(report.joined)} signal(s) joined, "
            f"{len(report.to_refresh)} refreshed, {report.outcomes + rebuilt} outcome(s) updated"
        )
