"""OpenSLO v1 in and out: `openslo import FILE` and `openslo export`."""

import sys
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from slo import openslo
from slo.models import SLO


class Command(BaseCommand):
    help = "Import SLOs from an OpenSLO v1 file (all or nothing), or export them all."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        importer = actions.add_parser(
            "import", help="Create or update SLOs from FILE ('-': stdin)."
        )
        importer.add_argument("file")
        actions.add_parser("export", help="Write every SLO as OpenSLO YAML to stdout.")

    def handle(self, *args, action, **options):
        if action == "export":
            documents = [openslo.to_document(slo.definition()) for slo in SLO.objects.all()]
            self.stdout.write(openslo.dump_yaml(documents), ending="")
            return
        path = options["file"]
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
            applied = SLO.objects.apply_definitions(openslo.parse(openslo.load_yaml(text)))
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        except openslo.OpenSLOError as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        for slo in applied:
            self.stdout.write(f"imported {slo.name}")
