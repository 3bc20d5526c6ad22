"""OTLP/HTTP receivers under WSGI: POST /v1/traces, /v1/metrics and /v1/logs.

The OTLP port is served by the ASGI server (telemetry/http_server.py); these
views serve the same endpoints wherever Django runs under WSGI (the dashboard
port, the test client). Both call telemetry/receiver.py, which answers 200
only once the spans are committed or spooled.
"""

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from telemetry import ingest, receiver

# Kept here for the callers that name the content types by the view.
PROTOBUF = receiver.PROTOBUF
JSON = receiver.JSON


@csrf_exempt
def otlp_export(request: HttpRequest, signal_path: str) -> HttpResponse:
    signal = receiver.SIGNALS[signal_path]
    content_type = request.content_type.lower()
    reply = receiver.check_request(request.method, content_type) or receiver.check_token(
        content_type, request.headers.get("Authorization")
    )
    if reply is None:
        ingest.start_replayer()
        reply = receiver.receive(
            signal, content_type, request.headers.get("Content-Encoding", ""), _body_stream(request)
        )
    return _http_response(reply)


def otlp_traces(request: HttpRequest) -> HttpResponse:
    return otlp_export(request, "/v1/traces")


def otlp_metrics(request: HttpRequest) -> HttpResponse:
    return otlp_export(request, "/v1/metrics")


def otlp_logs(request: HttpRequest) -> HttpResponse:
    return otlp_export(request, "/v1/logs")


def _http_response(reply: receiver.Reply) -> HttpResponse:
    response = HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers.items():
        response[name] = value
    return response


def _body_stream(request: HttpRequest):
    """The request body, also when it comes chunked, without a Content-Length.

    Django reads a body without Content-Length as empty, which would answer
    200 to spans it never saw. gunicorn decodes chunked bodies in wsgi.input;
    read_body caps what is read either way.
    """
    if (
        not request.META.get("CONTENT_LENGTH")
        and "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    ):
        return request.META["wsgi.input"]
    return request
