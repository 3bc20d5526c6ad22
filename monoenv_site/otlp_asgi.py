"""ASGI entry point of the OTLP/HTTP port: the receivers, and Django for the rest.

Served by gunicorn with telemetry.http_server.OtlpWorker (see
monoenv_site/launcher.py and docs/operations.md).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monoenv_site.settings")

django_application = get_asgi_application()

from telemetry.asgi import OtlpApplication  # noqa: E402 - needs Django set up first

application = OtlpApplication(django_application)
