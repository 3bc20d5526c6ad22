"""CoarseRollup now belongs to telemetry (telemetry 0006 took over its table).

Runs after telemetry 0006, so on an existing install the table has already
been renamed and the DROP finds nothing; on a fresh one it drops the empty
table that 0001 created.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_initial"),
        ("telemetry", "0006_coarse_rollup"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="CoarseRollup")],
            database_operations=[
                migrations.RunSQL(
                    "DROP TABLE IF EXISTS dashboard_coarserollup",
                    reverse_sql=migrations.RunSQL.noop,
                )
            ],
        ),
    ]
