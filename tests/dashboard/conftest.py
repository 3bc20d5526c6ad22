from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.utils import timezone

from telemetry import partitions
from tests.dashboard.factories import build_world


@pytest.fixture(autouse=True)
def _fresh_partitions(request, django_db_blocker):
    """Forget cached partitions around each test; drop those a transactional test committed."""
    partitions.forget_partitions()
    cache.clear()
    yield
    if {"transactional_db", "live_server"} & set(request.fixturenames):
        with django_db_blocker.unblock():
            partitions.drop_partitions_before(timezone.now() + timedelta(days=400))
    partitions.forget_partitions()


@pytest.fixture
def viewer(db) -> User:
    return User.objects.create_user("viewer", password="a-long-test-password")


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def world(db):
    return build_world(timezone.now())
