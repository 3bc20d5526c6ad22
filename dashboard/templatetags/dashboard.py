from django import template
from django.urls import reverse

from dashboard import assets
from telemetry.demo import is_demo

register = template.Library()


@register.simple_tag
def asset(name: str) -> str:
    """The URL of a dashboard asset, versioned by its content."""
    name = name.encode().decode()  # a plain str: Path rejects SafeString
    return f"{reverse('dashboard:asset', args=[name])}?v={assets.version(name)}"


@register.filter
def service_label(name: str) -> str:
    """A service's name as pickers show it: demo services say they are the demo's."""
    return f"{name} (demo)" if is_demo(name) else name
