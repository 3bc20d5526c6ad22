"""Moving the five-minute and hourly rollups from the dashboard into telemetry keeps every row."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

# Before the move: the dashboard's table exists, telemetry's does not.
BEFORE = [("dashboard", "0001_initial"), ("telemetry", "0005_pending_minute_marks")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _leaves():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_the_coarse_rollups_move_to_telemetry_with_their_rows():
    old = _migrate(BEFORE)
    start = timezone.now().replace(second=0, microsecond=0)
    row = old.get_model("dashboard", "CoarseRollup").objects.create(
        service="checkout", route="/orders", version="1.0.0", resolution=300, start=start,
        requests=120, errors=3, bucket_indexes=[4, 9], bucket_counts=[100, 20],
    )  # fmt: skip

    new = _migrate(_leaves())

    [moved] = new.get_model("telemetry", "CoarseRollup").objects.all()
    assert moved.pk == row.pk
    assert (moved.service, moved.resolution, moved.start) == ("checkout", 300, start)
    assert (moved.requests, moved.errors) == (120, 3)
    assert (moved.bucket_indexes, moved.bucket_counts) == ([4, 9], [100, 20])
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('dashboard_coarserollup')")
        assert cursor.fetchone()[0] is None
    # The unique key still holds under its new name, and new rows get fresh ids.
    fresh = new.get_model("telemetry", "CoarseRollup").objects.create(
        service="checkout", route="/orders", version="1.0.0", resolution=3600, start=start,
        requests=1, errors=0, bucket_indexes=[], bucket_counts=[],
    )  # fmt: skip
    assert fresh.pk > row.pk


@pytest.mark.django_db(transaction=True)
def test_the_move_can_be_undone_with_its_rows():
    _migrate(_leaves())
    new = MigrationExecutor(connection).loader.project_state(_leaves()).apps
    start = timezone.now().replace(second=0, microsecond=0)
    new.get_model("telemetry", "CoarseRollup").objects.create(
        service="payments", route="/charge", version="2", resolution=300, start=start,
        requests=7, errors=0, bucket_indexes=[1], bucket_counts=[7],
    )  # fmt: skip
    old = _migrate(BEFORE)
    back = old.get_model("dashboard", "CoarseRollup").objects.values_list("requests", flat=True)
    assert list(back) == [7]
    _migrate(_leaves())
