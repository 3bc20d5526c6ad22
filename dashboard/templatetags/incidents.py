"""{% open_incidents %}: open incidents first, and a line of DORA figures, on any page."""

from django import template
from django.utils import timezone

from dashboard import incident_pages
from incidents import delivery

register = template.Library()


@register.inclusion_tag("dashboard/incident_banner.html")
def open_incidents() -> dict:
    now = timezone.now()
    return {
        "incidents": incident_pages.open_incidents(now=now),
        "dora": delivery.metrics(days=30, now=now),
    }
