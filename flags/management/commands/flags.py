from django.core.management.base import BaseCommand

from flags import jobs


class Command(BaseCommand):
    help = "Attribute flag evaluations and detect flag changes once (what beat runs each minute)."

    def handle(self, *args, **options):
        self.stdout.write(jobs.run_once())
