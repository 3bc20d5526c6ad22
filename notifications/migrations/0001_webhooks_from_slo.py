# Takes over slo's webhook tables (renamed by slo 0002) with their rows. A
# delivery's foreign key to slo's alert becomes a plain subject, "slo.alert:<id>",
# so that this app depends on none other.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

MOVED_MODELS = ("webhooktarget", "delivery")


def move_content_types(apps, schema_editor):
    # Admin permissions granted on the old models keep working on the new ones.
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="slo", model__in=MOVED_MODELS).update(
        app_label="notifications"
    )


def restore_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="notifications", model__in=MOVED_MODELS).update(
        app_label="slo"
    )


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("slo", "0002_webhooks_move_to_notifications"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="WebhookTarget",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=100)),
                        ("url", models.URLField(max_length=1000)),
                        ("kind", models.CharField(choices=[("json", "Generic JSON"), ("slack", "Slack-compatible")], default="json", max_length=10)),
                        ("severities", models.JSONField(blank=True, default=list, help_text="Severities to send (page, ticket); empty for all.")),
                        ("enabled", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                    ],
                ),
                migrations.CreateModel(
                    name="Delivery",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        # The old foreign key's column, seen as a plain number until it goes.
                        ("alert_id", models.BigIntegerField(null=True)),
                        ("event", models.CharField(max_length=10)),
                        ("payload", models.JSONField()),
                        ("status", models.CharField(choices=[("pending", "Pending"), ("sent", "Sent"), ("failed", "Failed")], default="pending", max_length=10)),
                        ("attempts", models.PositiveSmallIntegerField(default=0)),
                        ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                        ("last_error", models.TextField(blank=True)),
                        ("response_status", models.IntegerField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("sent_at", models.DateTimeField(blank=True, null=True)),
                        ("target", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="deliveries", to="notifications.webhooktarget")),
                    ],
                    options={
                        "verbose_name_plural": "deliveries",
                        "indexes": [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")],
                    },
                ),
            ],
        ),
        migrations.RunPython(move_content_types, restore_content_types),
        migrations.AddField(
            model_name="delivery",
            name="subject",
            field=models.CharField(db_index=True, default="", help_text="What it is about: '<app>.<model>:<id>'.", max_length=200),
            preserve_default=False,
        ),
        migrations.RunSQL(
            "UPDATE notifications_delivery SET subject = 'slo.alert:' || alert_id",
            reverse_sql=(
                "UPDATE notifications_delivery SET alert_id = split_part(subject, ':', 2)::bigint "
                "WHERE subject LIKE 'slo.alert:%'"
            ),
        ),
        # Dropping the column drops its foreign key to slo_alert with it.
        migrations.RemoveField(model_name="delivery", name="alert_id"),
        migrations.AlterField(
            model_name="delivery",
            name="event",
            field=models.CharField(max_length=40),
        ),
    ]
