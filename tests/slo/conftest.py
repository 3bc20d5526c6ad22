from datetime import UTC, datetime

import pytest

from telemetry import partitions
from tests.helpers import bearer

# A fixed instant, half a minute past, so minute boundaries are visible in tests.
NOW = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_cached_partitions():
    # Each test's rollback drops the partitions it created; the cache must forget them.
    partitions.forget_partitions()
    yield
    partitions.forget_partitions()


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def reader(read_token) -> dict:
    return bearer(read_token)


@pytest.fixture
def deployer(make_token) -> dict:
    # Writing SLOs and reading them back in one test.
    return bearer(make_token("deploy", "read", name="deployer"))


@pytest.fixture
def ingester(ingest_token) -> dict:
    return bearer(ingest_token)
