"""`manage.py simulate`: stream the demo shop (demo/simulator.py) to Monoenv."""

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demo import simulator


class Command(BaseCommand):
    help = "Send the demo shop's traffic, deploys and regressions to Monoenv over OTLP/HTTP."

    def add_arguments(self, parser):
        default_endpoint = f"http://localhost:{settings.MONOENV_OTLP_HTTP_PORT}"
        parser.add_argument("--endpoint", default=default_endpoint, help="OTLP/HTTP base URL.")
        parser.add_argument(
            "--api", default=settings.MONOENV_PUBLIC_URL, help="Monoenv URL for deploys and SLOs."
        )
        parser.add_argument(
            "--token", default="", help="Token with the ingest scope (default: ingest-token.txt)."
        )
        parser.add_argument(
            "--api-token", default="", help="Token with the deploy scope (default: ci-token.txt)."
        )
        parser.add_argument(
            "--incident-token", default="",
            help="Token with the read and incident scopes for the demo's responder "
            "(default: demo-responder-token.txt; none: incidents wait for a person).",
        )  # fmt: skip
        parser.add_argument(
            "--duration", type=float, default=0, help="Seconds to stream; 0 runs until stopped."
        )
        parser.add_argument("--rate", type=float, default=20, help="Front-end requests/s.")
        parser.add_argument(
            "--backfill", type=int, default=30, help="Minutes of history to send first."
        )
        parser.add_argument(
            "--once", action="store_true", help="Send the backfill only, then exit."
        )
        parser.add_argument(
            "--no-slos", action="store_true", help="Do not define the demo's SLOs."
        )
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument(
            "--ready-file", default=None,
            help="Created once the backfill is sent and flushed (the launcher waits for it).",
        )  # fmt: skip

    def handle(self, *args, **options):
        simulation = simulator.Simulation(
            endpoint=options["endpoint"],
            api=options["api"],
            token=options["token"] or _local_token("ingest-token.txt", "--token"),
            api_token=options["api_token"] or _local_token("ci-token.txt", "--api-token"),
            rate=options["rate"],
            seed=options["seed"] if options["seed"] is not None else time.time_ns(),
            log=lambda line: self.stdout.write(f"simulate: {line}"),
        )
        try:
            if not options["no_slos"]:
                simulation.define_slos()
            minute = simulator.backfill(simulation, options["backfill"])
            if options["ready_file"]:
                simulation.flush()
                Path(options["ready_file"]).touch()
            if not options["once"]:
                responder = _responder(options, log=lambda line: self.stdout.write(line))
                simulator.stream(simulation, minute, options["duration"], responder)
        except KeyboardInterrupt:
            pass
        finally:
            simulation.flush()
            simulation.shutdown()


def _responder(options, *, log) -> simulator.Responder | None:
    token = options["incident_token"]
    path = settings.MONOENV_DATA_DIR / "demo-responder-token.txt"
    if not token and path.exists():
        token = path.read_text().strip()
    if not token:
        return None
    return simulator.Responder(api=options["api"], token=token, log=log)


def _local_token(file_name: str, option: str) -> str:
    path = settings.MONOENV_DATA_DIR / file_name
    if path.exists():
        return path.read_text().strip()
    raise CommandError(f"no {option} given and no {path}; run `make run` first or pass {option}")
