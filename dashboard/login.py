"""Login throttling for the dashboard's and the admin's login forms.

After MONOENV_LOGIN_FAILURES_PER_USER failed logins for one username, or
MONOENV_LOGIN_FAILURES_PER_ADDRESS from one client address, within
MONOENV_LOGIN_WINDOW_SECONDS, further attempts are refused, right password or
not, until the bucket refills (telemetry.ratelimit, shared by every process).
"""

import hashlib

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest

from telemetry import ratelimit


def client_address(request: HttpRequest | None) -> str:
    """The client's address, read through MONOENV_TRUSTED_PROXIES proxies."""
    if request is None:
        return ""
    hops = settings.MONOENV_TRUSTED_PROXIES
    if hops > 0:
        forwarded = [
            address.strip()
            for address in request.headers.get("X-Forwarded-For", "").split(",")
            if address.strip()
        ]
        # Each trusted proxy appends the address it saw; earlier entries are the client's word.
        if len(forwarded) >= hops:
            return forwarded[-hops][:45]
    return request.META.get("REMOTE_ADDR", "")


def _buckets(username: str, address: str) -> list[tuple[str, int]]:
    """The buckets a login draws on, with their allowed failures; 0 turns one off."""
    # Hashed, so the table never holds a password typed as a username, and keys stay short.
    user_hash = hashlib.sha256(username.casefold().encode()).hexdigest()[:40]
    buckets = [
        (f"login-user:{user_hash}", settings.MONOENV_LOGIN_FAILURES_PER_USER),
        (f"login-addr:{address}", settings.MONOENV_LOGIN_FAILURES_PER_ADDRESS),
    ]
    return [(key, failures) for key, failures in buckets if failures > 0]


def _rate(failures: int) -> float:
    return failures / settings.MONOENV_LOGIN_WINDOW_SECONDS


class ThrottledLoginMixin:
    """Refuses a login while its username or address is over its failures."""

    def clean(self):
        buckets = _buckets(self.cleaned_data.get("username") or "", client_address(self.request))
        waits = [ratelimit.wait(key, rate=_rate(limit), burst=limit) for key, limit in buckets]
        wait = max(waits, default=0)
        if wait:
            raise forms.ValidationError(
                "Too many failed logins for this account or from this address. "
                "Try again in %(seconds)d seconds.",
                code="throttled",
                params={"seconds": ratelimit.retry_after_seconds(wait)},
            )
        try:
            return super().clean()
        except forms.ValidationError:
            for key, limit in buckets:
                ratelimit.take(key, rate=_rate(limit), burst=limit)
            raise


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass
