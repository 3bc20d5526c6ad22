from django import template
from django.urls import reverse

from dashboard import assets

register = template.Library()


@register.simple_tag
def asset(name: str) -> str:
    """The URL of a dashboard asset, versioned by its content."""
    name = name.encode().decode()  # a plain str: Path rejects SafeString
    return f"{reverse('dashboard:asset', args=[name])}?v={assets.version(name)}"
