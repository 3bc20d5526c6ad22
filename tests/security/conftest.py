import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from telemetry.models import TokenScope
from tests.dashboard.factories import build_world

PASSWORD = "a-long-test-password"


@pytest.fixture
def all_scopes_token(make_token) -> str:
    return make_token(*TokenScope.values, name="everything")


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
