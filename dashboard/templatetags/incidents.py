"""{% open_incidents %}: open incidents first, and a line of DORA figures, on any page.

The DORA line is filled in by incident-banner.js from delivery.json, so the
page itself spends one query here.
"""

from django import template
from django.utils import timezone

from dashboard import incident_pages

register = template.Library()


@register.inclusion_tag("dashboard/incident_banner.html")
def open_incidents() -> dict:
    return {"incidents": incident_pages.open_incidents(now=timezone.now())}
