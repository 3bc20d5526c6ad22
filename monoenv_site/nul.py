"""NUL characters are refused at the door: PostgreSQL text cannot hold them.

Span data replaces them on ingest (telemetry.otlp); everything else that a
request carries into a query, a URL's path and parameters or an API body,
is refused with a 400 instead of failing in the database.
"""

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from ninja.parser import Parser


def has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    return False


def refuse_nul_in_urls(get_response):
    """Middleware: 400 for a NUL in the path or the query string."""

    def middleware(request: HttpRequest) -> HttpResponse:
        if has_nul(request.path) or has_nul(dict(request.GET.lists())):
            return HttpResponseBadRequest(
                "NUL characters are not allowed in URLs", content_type="text/plain"
            )
        return get_response(request)

    return middleware


class NulRefusingParser(Parser):
    """ninja's JSON parser, refusing NUL in bodies (answered as a 400)."""

    def parse_body(self, request: HttpRequest):
        data = super().parse_body(request)
        if has_nul(data):
            raise ValueError("NUL characters are not allowed")
        return data
