"""Bearer-token authentication shared by the HTTP receiver, gRPC and the API.

The API's django-ninja auth (TokenAuth) lives here too, next to the tokens it
checks, so the apps' routers need nothing from the project package.

Token checks are cached per process for MONOENV_TOKEN_CACHE_SECONDS, so a
revoked token is refused within that time. While the database is down, a
token it confirmed earlier is still accepted: no one can revoke it then
(revoking is a database write), and ingest must keep spooling. The
confirmations are also kept on disk next to the spool, so a process started
during an outage knows the tokens its predecessors saw.
"""

import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from ninja.errors import HttpError
from ninja.security import HttpBearer

from telemetry import ingest, ratelimit
from telemetry.models import ApiToken

# Confirmations on disk older than this are not trusted during an outage.
OFFLINE_TRUST_SECONDS = 7 * 24 * 3600
# A token's disk entry is rewritten at most this often.
DISK_REFRESH_SECONDS = 300


@dataclass(frozen=True)
class _Confirmed:
    """What an ingest check needs of a token, as the database last said."""

    pk: int
    scopes: tuple[str, ...]
    checked_at: float  # time.monotonic() of the check


_confirmed: dict[str, _Confirmed] = {}
_disk_written: dict[str, float] = {}
# Token pk -> time.monotonic() when this process last knew last_used_at was fresh.
_use_recorded: dict[int, float] = {}
_disk_lock = threading.Lock()


class Unauthenticated(Exception):
    """No token, or one that is unknown or revoked (HTTP 401)."""


class Forbidden(Exception):
    """A valid token without the scope the endpoint needs (HTTP 403)."""


class RateLimited(Exception):
    """A valid token over MONOENV_TOKEN_RATE_LIMIT (HTTP 429, gRPC RESOURCE_EXHAUSTED)."""

    def __init__(self, retry_after: int):
        super().__init__(f"this token is over its rate limit; retry in {retry_after} s")
        self.retry_after = retry_after


def token_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def authenticate(raw_token: str | None, *, scope: str) -> ApiToken:
    """The active token with this scope, or Unauthenticated, Forbidden, RateLimited.

    The ingest scope is checked through the cache (see the module docstring)
    and raises DatabaseError only for a token never confirmed while the
    database is down; every other scope asks the database each time.
    """
    if not raw_token:
        raise Unauthenticated("missing bearer token")
    token_hash = ApiToken.hash(raw_token)
    if scope != "ingest":
        token = ApiToken.objects.active().filter(token_hash=token_hash).first()
        if token is None:
            raise Unauthenticated("unknown or revoked token")
        scopes = token.scopes
    else:
        confirmed = _confirmed.get(token_hash)
        age = time.monotonic() - confirmed.checked_at if confirmed else None
        if age is None or age >= settings.MONOENV_TOKEN_CACHE_SECONDS:
            confirmed = _confirm(token_hash, stale=confirmed)
        scopes = list(confirmed.scopes)
        # A stand-in holding what was confirmed: the ingest path needs its pk only.
        token = ApiToken(pk=confirmed.pk, scopes=scopes, token_hash=token_hash)
    if scope not in scopes:
        raise Forbidden(f"this token lacks the '{scope}' scope")
    if not ingest.database_down():
        try:
            _check_rate(token)
            _record_use(token)
        except DatabaseError:
            if scope != "ingest":
                raise
            # Not countable without the database; the spool still bounds intake.
    return token


def _confirm(token_hash: str, *, stale: "_Confirmed | None") -> _Confirmed:
    try:
        if ingest.database_down():
            raise DatabaseError("the database failed a store just now")
        token = ApiToken.objects.active().filter(token_hash=token_hash).first()
    except DatabaseError:
        offline = stale or _confirmed_on_disk(token_hash)
        if offline is None:
            raise
        return offline
    if token is None:
        _confirmed.pop(token_hash, None)
        _forget_on_disk(token_hash)
        raise Unauthenticated("unknown or revoked token")
    confirmed = _Confirmed(token.pk, tuple(token.scopes), time.monotonic())
    _confirmed[token_hash] = confirmed
    if "ingest" in confirmed.scopes:
        _remember_on_disk(token_hash, confirmed)
    return confirmed


def _tokens_file() -> Path:
    return Path(settings.MONOENV_SPOOL_DIR) / "confirmed-tokens.json"


def _read_disk() -> dict:
    try:
        return json.loads(_tokens_file().read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_disk(entries: dict) -> None:
    path = _tokens_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(entries, file)
    os.replace(temporary, path)


def _remember_on_disk(token_hash: str, confirmed: _Confirmed) -> None:
    now = time.monotonic()
    if now - _disk_written.get(token_hash, float("-inf")) < DISK_REFRESH_SECONDS:
        return
    with _disk_lock:
        entries = _read_disk()
        entries[token_hash] = {"pk": confirmed.pk, "scopes": list(confirmed.scopes),
                               "confirmed_at": time.time()}  # fmt: skip
        try:
            _write_disk(entries)
        except OSError:
            return  # Only an outage would need it; the database is up now.
        _disk_written[token_hash] = now


def _forget_on_disk(token_hash: str) -> None:
    _disk_written.pop(token_hash, None)
    with _disk_lock:
        entries = _read_disk()
        if entries.pop(token_hash, None) is not None:
            try:
                _write_disk(entries)
            except OSError:
                pass


def _confirmed_on_disk(token_hash: str) -> "_Confirmed | None":
    entry = _read_disk().get(token_hash)
    if not entry or time.time() - entry.get("confirmed_at", 0) > OFFLINE_TRUST_SECONDS:
        return None
    # Dated long ago, so the database is asked again as soon as it answers.
    return _Confirmed(int(entry["pk"]), tuple(entry["scopes"]), float("-inf"))


def forget_confirmations() -> None:
    """Drop this process's cached checks."""
    _confirmed.clear()
    _disk_written.clear()
    _use_recorded.clear()


def _forget_token(sender, instance: ApiToken, **kwargs) -> None:
    # Revoked or changed in this process: refuse it at once, not after the expiry.
    _confirmed.pop(instance.token_hash, None)


post_save.connect(_forget_token, sender=ApiToken, dispatch_uid="auth-forget-token")
post_delete.connect(_forget_token, sender=ApiToken, dispatch_uid="auth-forget-token-deleted")


def _check_rate(token: ApiToken) -> None:
    rate = settings.MONOENV_TOKEN_RATE_LIMIT
    if rate <= 0:
        return
    burst = max(settings.MONOENV_TOKEN_RATE_BURST, 1)
    wait = ratelimit.take(f"token:{token.pk}", rate=rate, burst=burst)
    if wait:
        raise RateLimited(ratelimit.retry_after_seconds(wait))


def _record_use(token: ApiToken) -> None:
    """Write last_used_at at most once per MONOENV_TOKEN_TOUCH_SECONDS per process.

    The update writes nothing when the stored time is fresh, but asking was a
    database round trip on every ingest request. Once this process wrote it,
    or learned another process had, it asks again only after the interval, so
    last_used_at is at most two intervals old.
    """
    interval = settings.MONOENV_TOKEN_TOUCH_SECONDS
    if time.monotonic() - _use_recorded.get(token.pk, float("-inf")) < interval:
        return
    now = timezone.now()
    stale = now - timedelta(seconds=interval)
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)
    ).update(last_used_at=now)
    _use_recorded[token.pk] = time.monotonic()


class TokenAuth(HttpBearer):
    """django-ninja auth for the API: `Authorization: Bearer <token>` with the given scope."""

    def __init__(self, scope: str):
        super().__init__()
        self.scope = scope

    def __call__(self, request):
        try:
            return authenticate(
                token_from_header(request.headers.get("Authorization")), scope=self.scope
            )
        except Unauthenticated as exc:
            raise HttpError(401, str(exc)) from exc
        except Forbidden as exc:
            raise HttpError(403, str(exc)) from exc

    def authenticate(self, request, token):  # pragma: no cover - __call__ does the work
        return None


def rate_limited(request: HttpRequest, exc: RateLimited) -> JsonResponse:
    """The API's answer to RateLimited, which TokenAuth lets through."""
    response = JsonResponse({"detail": str(exc)}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response
