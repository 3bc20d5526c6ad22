"""Typed reads of environment variables, for settings.py and the launcher.

A value these do not understand raises ImproperlyConfigured at start-up
rather than quietly meaning the default: `DEBUG=ture` is a typo, not False.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envsecret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named in NAME_FILE."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    """True for 1/true/yes/on, False for 0/false/no/off, the default when unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"{name}={os.environ[name]!r} is not a boolean; use one of "
        f"{', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)}"
    )


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def is_set(name: str) -> bool:
    """Whether NAME or NAME_FILE gives a value (settings read secrets from either)."""
    return bool(os.environ.get(name) or os.environ.get(f"{name}_FILE"))
