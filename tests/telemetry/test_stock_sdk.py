"""A stock `opentelemetry-instrument` Flask service, set up with the launcher's printed lines.

Exactly the block the banner prints to copy (its first OTEL_* lines), plus a
service name and a short metric interval so the test need not wait a minute.
opentelemetry-distro exports traces, metrics and logs by default; its log
must show no export error, and the spans must arrive with their http.route.
"""

import io
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

from monoenv_site import launcher
from telemetry.models import Span
from tests.reliability.harness import wait_for

pytest.importorskip("opentelemetry.distro")
pytest.importorskip("flask")

FLASK_APP = """
import logging
import time

from flask import Flask

# Where the SDK's own complaints show: the distro sends the root logger's
# records to OTLP, and a service's log is its stderr.
logging.getLogger().addHandler(logging.StreamHandler())

app = Flask(__name__)


@app.route("/items/<int:item_id>")
def item(item_id):
    logging.getLogger("shop").warning("served item %s", item_id)
    return {"id": item_id}


if __name__ == "__main__":
    client = app.test_client()
    for item_id in range(5):
        assert client.get(f"/items/{item_id}").status_code == 200
    # Past a few metric intervals; the providers flush the rest at exit.
    time.sleep(3)
"""
ERRORS = re.compile(r"Failed to export|Traceback|Exception|error|UNIMPLEMENTED|404|StatusCode\.")


def printed_lines(settings, token: str) -> dict[str, str]:
    """The banner's first block of OTEL_* lines, as a user would paste them."""
    out = io.StringIO()
    with redirect_stdout(out):
        launcher.print_banner(settings, "(admin)", token, "(ci token)", demo=False)
    lines, started = [], False
    for line in out.getvalue().splitlines():
        if re.match(r"^OTEL_[A-Z_]+=", line.strip()):
            lines.append(line.strip())
            started = True
        elif started:
            break
    assert lines, out.getvalue()
    return dict(line.split("=", 1) for line in lines)


def test_a_stock_instrumented_flask_service_exports_without_error(
    start_server, ingest_token, settings, tmp_path
):
    server = start_server()
    settings.MONOENV_OTLP_HTTP_PORT = server.port
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OTEL_") and key not in ("DJANGO_SETTINGS_MODULE",)
    }
    env.update(printed_lines(settings, ingest_token))
    env.update(
        OTEL_SERVICE_NAME="stock-flask",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
    )
    app = tmp_path / "shop.py"
    app.write_text(FLASK_APP)
    instrument = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")

    run = subprocess.run(
        [instrument, sys.executable, str(app)], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip

    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    # The app's own warnings are fine; nothing from the SDK may complain.
    complaints = [line for line in output.splitlines() if ERRORS.search(line)]
    assert complaints == [], output
    spans = Span.objects.filter(service="stock-flask")
    wait_for(lambda: spans.count() == 5, timeout=30, what="the Flask spans")
    assert set(spans.values_list("http_route", flat=True)) == {"/items/<int:item_id>"}
    assert "HTTP/2" not in server.log()
