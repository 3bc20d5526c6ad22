"""OTLP/HTTP receiver: POST /v1/traces, as the OTLP specification describes it.

The view only authenticates, decodes and hands off to telemetry.ingest; it
answers 200 only once the spans are committed.
"""

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from telemetry import auth, bodies, otlp
from telemetry.ingest import StoreUnavailable, TooManySpans, ingest_request
from telemetry.models import TokenScope

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_DECODERS = {PROTOBUF: otlp.decode_protobuf, JSON: otlp.decode_json}


@csrf_exempt
def otlp_traces(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        response = HttpResponse(status=405)
        response["Allow"] = "POST"
        return response
    content_type = request.content_type.lower()
    if content_type not in _DECODERS:
        return _status(
            JSON, 415, code_pb2.INVALID_ARGUMENT, "use application/x-protobuf or application/json"
        )
    try:
        auth.authenticate(
            auth.token_from_header(request.headers.get("Authorization")), scope=TokenScope.INGEST
        )
    except auth.Unauthenticated as exc:
        return _status(content_type, 401, code_pb2.UNAUTHENTICATED, str(exc))
    except auth.Forbidden as exc:
        return _status(content_type, 403, code_pb2.PERMISSION_DENIED, str(exc))
    except auth.RateLimited as exc:
        # The OTLP exporters retry a 429 after its Retry-After.
        response = _status(content_type, 429, code_pb2.RESOURCE_EXHAUSTED, str(exc))
        response["Retry-After"] = str(exc.retry_after)
        return response
    except DatabaseError:
        # The token lives in the database too: while it is down this is a 503,
        # which exporters retry, not a 500, which they drop.
        return _unavailable(content_type)
    return _receive(request, content_type)


def _receive(request: HttpRequest, content_type: str) -> HttpResponse:
    try:
        body = bodies.read_body(
            _body_stream(request),
            request.headers.get("Content-Encoding", ""),
            settings.MONOENV_MAX_REQUEST_BYTES,
        )
        export_request = _DECODERS[content_type](body)
        batch = ingest_request(export_request)
    except (bodies.BodyTooLarge, TooManySpans) as exc:
        return _status(content_type, 413, code_pb2.RESOURCE_EXHAUSTED, str(exc))
    except bodies.UnsupportedEncoding as exc:
        return _status(content_type, 415, code_pb2.INVALID_ARGUMENT, str(exc))
    except (bodies.CorruptBody, otlp.UndecodableRequest) as exc:
        return _status(content_type, 400, code_pb2.INVALID_ARGUMENT, str(exc))
    except StoreUnavailable:
        return _unavailable(content_type)
    return _message_response(content_type, 200, batch.export_response())


def _unavailable(content_type: str) -> HttpResponse:
    response = _status(content_type, 503, code_pb2.UNAVAILABLE, "cannot store spans now; retry")
    response["Retry-After"] = str(settings.MONOENV_RETRY_AFTER_SECONDS)
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


def _status(content_type: str, http_status: int, code: int, text: str) -> HttpResponse:
    return _message_response(content_type, http_status, status_pb2.Status(code=code, message=text))


def _message_response(content_type: str, http_status: int, message) -> HttpResponse:
    if content_type == PROTOBUF:
        body = message.SerializeToString()
    else:
        body = json_format.MessageToJson(message, indent=None)
    return HttpResponse(body, status=http_status, content_type=content_type)
