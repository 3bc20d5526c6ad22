"""schemathesis against /api/v1/openapi.json: no generated request gets a 5xx or hangs."""

import time

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from monoenv_site.wsgi import application
from tests.helpers import bearer

# Each generated request must answer well within this, or it counts as a hang.
MAX_SECONDS = 5

# Loaded through WSGI, like every request below. (schemathesis' from_fixture
# does not run under pytest 9, hence a module-level schema.)
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@pytest.fixture
def api_world(world, settings):
    # One token sends every generated request; its rate limit is tested elsewhere.
    settings.MONOENV_TOKEN_RATE_LIMIT = 0
    settings.MONOENV_GITHUB_WEBHOOK_SECRET = "fuzz-secret"
    # As Django's test client does: the test's transaction must outlive each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield world
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case, api_world, all_scopes_token):
    started = time.monotonic()
    # No 5xx, and what does answer matches its schema. Undocumented 4xx codes
    # (401, 404, 422) are not failures here.
    case.call_and_validate(
        headers=bearer(all_scopes_token),
        checks=[not_a_server_error, response_schema_conformance],
    )
    assert time.monotonic() - started < MAX_SECONDS


@pytest.mark.django_db
def test_it_refuses_deploy_times_in_the_far_past(client, make_token):
    # Found by schemathesis: year 1 overflowed the upsert window into a 500.
    token = make_token("deploy", "read")
    body = {
        "service": "checkout",
        "version": "1",
        "started_at": "0001-01-01T00:01:00Z",
        "finished_at": "0001-01-01T00:00:00Z",
    }
    response = client.post(
        "/api/v1/deployments", data=body, content_type="application/json", headers=bearer(token)
    )
    assert response.status_code == 422
    assert "between 1970 and 9000" in response.content.decode()
