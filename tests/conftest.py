from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from telemetry import ingest, partitions
from telemetry.models import ApiToken


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Superusers for admin tests need a password; the real hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_process_state(request, django_db_blocker):
    """No cached partitions, ingest slots or cache entries carry from test to test.

    Partitions made inside a rolled-back test are gone, so the cache of known
    ones is dropped. Transactional tests commit their spans, and their flush
    skips the unmanaged (partitioned) span table, so its partitions are dropped.
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
