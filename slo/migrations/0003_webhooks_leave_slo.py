# State only: the tables now belong to notifications (see its 0001).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("slo", "0002_webhooks_move_to_notifications"),
        ("notifications", "0001_webhooks_from_slo"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Delivery"),
                migrations.DeleteModel(name="WebhookTarget"),
            ],
        ),
    ]
