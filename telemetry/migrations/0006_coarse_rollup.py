"""The five-minute and hourly rollups move from the dashboard into telemetry.

An install that has the dashboard's table keeps its rows: the table is
renamed. A fresh install creates it. dashboard's 0002 then forgets its model,
and runs after this one, so it never drops a table that holds rows.
"""

import django.contrib.postgres.fields
from django.db import migrations, models

OLD_TABLE = "dashboard_coarserollup"
NEW_TABLE = "telemetry_coarserollup"
OLD_INDEX, NEW_INDEX = "coarse_rollup_start", "telemetry_coarse_rollup_start"
OLD_UNIQUE, NEW_UNIQUE = "coarse_rollup_unique", "telemetry_coarse_rollup_unique"


def _table_exists(schema_editor, name: str) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def take_over_table(apps, schema_editor):
    if _table_exists(schema_editor, OLD_TABLE):
        schema_editor.execute(f"ALTER TABLE {OLD_TABLE} RENAME TO {NEW_TABLE}")
        # Index and constraint names are global in the schema: give them telemetry's.
        schema_editor.execute(f"ALTER INDEX {OLD_INDEX} RENAME TO {NEW_INDEX}")
        schema_editor.execute(f"ALTER INDEX {OLD_TABLE}_pkey RENAME TO {NEW_TABLE}_pkey")
        schema_editor.execute(f"ALTER SEQUENCE IF EXISTS {OLD_TABLE}_id_seq RENAME TO {NEW_TABLE}_id_seq")
        schema_editor.execute(
            f"ALTER TABLE {NEW_TABLE} RENAME CONSTRAINT {OLD_UNIQUE} TO {NEW_UNIQUE}"
        )
    else:
        schema_editor.create_model(apps.get_model("telemetry", "CoarseRollup"))


def give_back_table(apps, schema_editor):
    schema_editor.execute(f"ALTER TABLE {NEW_TABLE} RENAME CONSTRAINT {NEW_UNIQUE} TO {OLD_UNIQUE}")
    schema_editor.execute(f"ALTER INDEX {NEW_INDEX} RENAME TO {OLD_INDEX}")
    schema_editor.execute(f"ALTER INDEX {NEW_TABLE}_pkey RENAME TO {OLD_TABLE}_pkey")
    schema_editor.execute(f"ALTER SEQUENCE IF EXISTS {NEW_TABLE}_id_seq RENAME TO {OLD_TABLE}_id_seq")
    schema_editor.execute(f"ALTER TABLE {NEW_TABLE} RENAME TO {OLD_TABLE}")


class Migration(migrations.Migration):
    dependencies = [
        ("telemetry", "0005_pending_minute_marks"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="CoarseRollup",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("service", models.TextField()),
                        ("route", models.TextField()),
                        ("version", models.TextField()),
                        ("resolution", models.IntegerField(help_text="Seconds: 300 or 3600.")),
                        ("start", models.DateTimeField()),
                        ("requests", models.BigIntegerField()),
                        ("errors", models.BigIntegerField()),
                        ("bucket_indexes", django.contrib.postgres.fields.ArrayField(base_field=models.SmallIntegerField(), size=None)),
                        ("bucket_counts", django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None)),
                    ],
                    options={
                        "indexes": [models.Index(fields=["resolution", "start"], name="telemetry_coarse_rollup_start")],
                        "constraints": [models.UniqueConstraint(fields=("service", "resolution", "start", "route", "version"), name="telemetry_coarse_rollup_unique")],
                    },
                ),
            ],
            database_operations=[],
        ),
        # Outside the state-only operation, so the model above is in its apps.
        migrations.RunPython(take_over_table, give_back_table),
    ]
