import pytest

from telemetry import partitions


@pytest.fixture(autouse=True)
def _forget_partitions():
    # Each test's transaction rolls back the partitions it created.
    partitions.forget_partitions()
    yield
    partitions.forget_partitions()


@pytest.fixture
def read_token(make_token) -> str:
    return make_token("read")


@pytest.fixture
def deploy_token(make_token) -> str:
    return make_token("deploy")
