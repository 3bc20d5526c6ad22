"""`manage.py clear_demo`: remove every demo service's data, in every app.

Each app deletes its own rows (its `forget_services`); this command only
names the demo services (telemetry/demo.py) and calls them, downstream first.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from demo import simulator
from deployments import forget as deployments_forget
from flags import forget as flags_forget
from incidents import forget as incidents_forget
from slo import forget as slo_forget
from telemetry import demo
from telemetry import forget as telemetry_forget


def demo_services() -> list[str]:
    """The demo's services, and any other service named as one (an older demo's)."""
    seen = telemetry_forget.service_names()
    return sorted(set(simulator.SERVICES) | {name for name in seen if demo.is_demo(name)})


class Command(BaseCommand):
    help = (
        "Delete the spans, flag evaluations, rollups, SLOs, deploys, route shifts, flag changes "
        "and incidents of every demo service."
    )

    def handle(self, *args, **options):
        names = demo_services()
        with transaction.atomic():
            removed = {
                "incidents": incidents_forget.forget_services(names),
                "flag changes": flags_forget.forget_services(names),
                "deploys and route shifts": deployments_forget.forget_services(names),
                "SLOs": slo_forget.forget_services(names),
                "telemetry rows": telemetry_forget.forget_services(names),
            }
        counts = ", ".join(f"{count} {what}" for what, count in removed.items())
        self.stdout.write(f"Cleared the demo ({', '.join(names)}): {counts}.")
        self.stdout.write("Stop the demo too, or it sends more: MONOENV_DEMO=0 make run.")
