from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from telemetry import partitions


@pytest.fixture(autouse=True)
def _forget_partitions():
    # Each test's transaction rolls back the partitions it created.
    partitions.forget_partitions()
    yield
    partitions.forget_partitions()


@pytest.fixture
def now() -> datetime:
    return timezone.now().replace(second=0, microsecond=0)


@pytest.fixture
def t0(now) -> datetime:
    """Two hours ago: far enough back for every window to have passed."""
    return now - timedelta(hours=2)
