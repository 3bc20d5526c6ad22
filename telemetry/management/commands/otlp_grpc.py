import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from telemetry.grpc_server import build_server


class Command(BaseCommand):
    help = "Serve OTLP/gRPC (traces, metrics and logs) until SIGINT or SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.MONOENV_OTLP_GRPC_PORT)
        parser.add_argument("--host", default="0.0.0.0")
        parser.add_argument("--threads", type=int, default=8)

    def handle(self, *args, port: int, host: str, threads: int, **options):
        server, bound_port = build_server(f"{host}:{port}", threads=threads)
        server.start()
        self.stdout.write(f"OTLP/gRPC listening on {host}:{bound_port}", ending="\n")
        self.stdout.flush()

        def stop(signum, frame):
            # Finish the batches in flight so their clients get an answer.
            server.stop(grace=10)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        server.wait_for_termination()
