from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.utils import timezone

from telemetry import ingest, partitions
from telemetry.models import ApiToken, TokenScope
from tests.dashboard.factories import build_world

PASSWORD = "a-long-test-password"


@pytest.fixture(autouse=True)
def _fresh_state(request, django_db_blocker):
    """No cached partitions, ingest slots or dashboard cache across tests.

    Partitions made inside a rolled-back test are gone, so the cache of known
    ones is dropped; those a transactional test committed are dropped too.
    """
    partitions.forget_partitions()
    ingest._slots = None
    cache.clear()
    yield
    ingest._slots = None
    if {"transactional_db", "live_server"} & set(request.fixturenames):
        with django_db_blocker.unblock():
            partitions.drop_partitions_before(timezone.now() + timedelta(days=400))
    partitions.forget_partitions()


@pytest.fixture
def make_token(db):
    """Issues a token with the given scopes and returns its raw value."""

    def make(*scopes: str, name: str = "test") -> str:
        return ApiToken.issue(name=name, scopes=list(scopes))[1]

    return make


@pytest.fixture
def all_scopes_token(make_token) -> str:
    return make_token(*TokenScope.values, name="everything")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def viewer(db) -> User:
    return User.objects.create_user("viewer", password=PASSWORD)


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_superuser("root", password=PASSWORD)


@pytest.fixture
def world(db):
    """Two services, a trace with a hostile span name, an SLO with an alert, two deploys."""
    return build_world(timezone.now())
