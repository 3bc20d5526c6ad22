"""Every page and every read endpoint needs a login or a token, except an explicit allowlist."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from monoenv_site.api import api

# Open on purpose, each for a reason.
PUBLIC = {
    "login/": "the login page itself",
    "admin/login/": "the admin's login page",
    "logout/": "POST only; logging out needs no credential",
    "admin/logout/": "POST only; logging out needs no credential",
    "assets/<str:name>": "the dashboard's CSS and JS: static files, no data",
    "v1/traces": "the OTLP receiver, which checks its own bearer token (tests/telemetry)",
    "v1/metrics": "the OTLP metrics receiver, with the traces receiver's token check",
    "v1/logs": "the OTLP logs receiver, with the traces receiver's token check",
    "api/v1/openapi.json": "the API's schema describes the code, which is public, not data",
    "api/v1/": "ninja's API root: a 404 without any data",
}

API_PREFIX = "/api/v1"


def _routes(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, route)
        elif isinstance(pattern, URLPattern):
            yield route


def _sample_url(route: str, world) -> str:
    samples = {
        "slo_id": world.slo.pk,
        "deploy_id": world.failed_deploy.pk,
        "deployment_id": world.failed_deploy.pk,
        "alert_id": world.alert.pk,
        "trace_id": world.trace_id,
        "service": "checkout",
    }
    # Admin regexes: an app's index and the catch-all.
    route = route.replace("^(?P<app_label>auth|telemetry|slo)/$", "slo/")
    route = route.replace("(?P<url>.*)$", "no-such-page/")
    return "/" + re.sub(
        r"<(?:\w+:)?(\w+)>", lambda match: str(samples.get(match[1], 1)), route
    ).replace("{", "").replace("}", "")


def _api_operations(world):
    schema = api.get_openapi_schema(path_prefix=API_PREFIX)
    for path, operations in schema["paths"].items():
        for method in operations:
            url = re.sub(r"\{(\w+)\}", r"<\1>", path).lstrip("/")
            yield method, _sample_url(url, world)


def test_every_url_pattern_needs_a_login_or_a_token(client, world):
    checked = []
    for route in _routes(get_resolver()):
        if route in PUBLIC:
            continue
        url = _sample_url(route, world)
        if url.startswith(API_PREFIX):
            continue  # checked per method from the schema below
        response = client.get(url)
        if url.startswith("/admin/"):
            assert response.status_code == 302, url
            assert response["Location"].startswith("/admin/login/"), url
        elif url.endswith(".json"):
            assert response.status_code == 401, url
        else:
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/?next="), url
        checked.append(url)
    assert len(checked) > 60


def test_every_api_operation_needs_a_token(client, world, settings):
    settings.MONOENV_GITHUB_WEBHOOK_SECRET = "a-secret"
    operations = list(_api_operations(world))
    for method, url in operations:
        response = getattr(client, method)(url)
        assert response.status_code == 401, (method, url)
    assert len(operations) >= 14


def test_every_api_route_is_in_the_schema_or_public(world):
    documented = {url for _, url in _api_operations(world)}
    for route in _routes(get_resolver()):
        if route.startswith("api/") and route not in PUBLIC:
            assert _sample_url(route, world) in documented, route


@pytest.mark.parametrize("route", sorted(PUBLIC))
def test_the_allowlist_names_real_routes(route):
    assert route in set(_routes(get_resolver()))
