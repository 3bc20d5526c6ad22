from datetime import UTC, datetime

import pytest

from telemetry import partitions
from telemetry.models import ApiToken

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
def reader(db) -> dict:
    raw = ApiToken.issue(name="reader", scopes=["read"])[1]
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def deployer(db) -> dict:
    raw = ApiToken.issue(name="deployer", scopes=["deploy", "read"])[1]
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def ingester(db) -> dict:
    raw = ApiToken.issue(name="ingester", scopes=["ingest"])[1]
    return {"Authorization": f"Bearer {raw}"}
