from django.conf import settings
from django.core.management.base import BaseCommand

from telemetry import ingest


class Command(BaseCommand):
    help = (
        "Show this host's ingest spool (batches PostgreSQL could not take yet); "
        "with --replay, store them now, as each serving process does by itself."
    )

    def add_arguments(self, parser):
        parser.add_argument("--replay", action="store_true", help="store the spooled batches")

    def handle(self, *args, replay: bool, **options):
        spool = ingest.current_spool()
        if replay:
            spool.clean()
            stored = ingest.replay_spool()
            self.stdout.write(f"replayed {stored} batch(es)")
        stats = spool.stats()
        oldest = "-" if stats.oldest_age_seconds is None else f"{stats.oldest_age_seconds:.0f} s"
        self.stdout.write(
            f"spool {settings.MONOENV_SPOOL_DIR}: {stats.files} batch(es), {stats.bytes} bytes "
            f"of {settings.MONOENV_SPOOL_MAX_BYTES}, oldest {oldest}"
        )
