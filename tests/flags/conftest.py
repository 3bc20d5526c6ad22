import pytest

from telemetry import partitions


@pytest.fixture(autouse=True)
def _forget_partitions():
    # Each test's transaction rolls back the partitions it created.
    partitions.forget_partitions()
    yield
    partitions.forget_partitions()


