# The webhook tables move to the notifications app, rows and all: renamed here,
# taken into notifications' state by its 0001, dropped from slo's state by 0003.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("slo", "0001_slos_alerts_webhooks"),
    ]

    operations = [
        migrations.AlterModelTable(name="webhooktarget", table="notifications_webhooktarget"),
        migrations.AlterModelTable(name="delivery", table="notifications_delivery"),
    ]
