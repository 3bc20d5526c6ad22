import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.dashboard.factories import build_world


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
