"""Bearer-token authentication shared by the HTTP receiver, gRPC and the API.

The API's django-ninja auth (TokenAuth) lives here too, next to the tokens it
checks, so the apps' routers need nothing from the project package.
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from ninja.errors import HttpError
from ninja.security import HttpBearer

from telemetry import ratelimit
from telemetry.models import ApiToken


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
    if not raw_token:
        raise Unauthenticated("missing bearer token")
    token = ApiToken.objects.active().filter(token_hash=ApiToken.hash(raw_token)).first()
    if token is None:
        raise Unauthenticated("unknown or revoked token")
    if not token.has_scope(scope):
        raise Forbidden(f"this token lacks the '{scope}' scope")
    _check_rate(token)
    _record_use(token)
    return token


def _check_rate(token: ApiToken) -> None:
    rate = settings.MONOENV_TOKEN_RATE_LIMIT
    if rate <= 0:
        return
    burst = max(settings.MONOENV_TOKEN_RATE_BURST, 1)
    wait = ratelimit.take(f"token:{token.pk}", rate=rate, burst=burst)
    if wait:
        raise RateLimited(ratelimit.retry_after_seconds(wait))


def _record_use(token: ApiToken) -> None:
    # At most one write per token per interval, so busy ingest does not hammer one row.
    now = timezone.now()
    stale = now - timedelta(seconds=settings.MONOENV_TOKEN_TOUCH_SECONDS)
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)
    ).update(last_used_at=now)


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
