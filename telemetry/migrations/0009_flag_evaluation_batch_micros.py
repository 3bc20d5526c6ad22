"""Batch entries keep their evaluation time as microseconds since the epoch.

Ingest now writes the time (element 2 of each entry, telemetry/flag_store.py
BATCH_FIELDS) as an integer rather than ISO text: it has the integer already,
and reads turn it into a timestamp several times faster than they parse one.
This converts the entries stored before; a batch row is all of one form.
"""

from django.db import migrations

TO_MICROS = """
UPDATE telemetry_flagevaluationbatch b SET evaluations = (
    SELECT jsonb_agg(
        jsonb_set(r, '{2}', to_jsonb((extract(epoch FROM (r->>2)::timestamptz) * 1000000)::bigint))
        ORDER BY n
    )::text
    FROM jsonb_array_elements(b.evaluations::jsonb) WITH ORDINALITY AS e(r, n)
)
WHERE jsonb_typeof(b.evaluations::jsonb -> 0 -> 2) = 'string';
"""

TO_TEXT = """
UPDATE telemetry_flagevaluationbatch b SET evaluations = (
    SELECT jsonb_agg(
        jsonb_set(r, '{2}', to_jsonb(timestamptz 'epoch' + (r->>2)::bigint * interval '1 microsecond'))
        ORDER BY n
    )::text
    FROM jsonb_array_elements(b.evaluations::jsonb) WITH ORDINALITY AS e(r, n)
)
WHERE jsonb_typeof(b.evaluations::jsonb -> 0 -> 2) = 'number';
"""


class Migration(migrations.Migration):

    dependencies = [
        ('telemetry', '0008_flag_evaluation_batch'),
    ]

    operations = [
        migrations.RunSQL(TO_MICROS, TO_TEXT),
    ]
