"""django-ninja authentication by scoped bearer token."""

from django.http import HttpRequest, JsonResponse
from ninja.errors import HttpError
from ninja.security import HttpBearer

from telemetry import auth


class TokenAuth(HttpBearer):
    """Accepts `Authorization: Bearer <token>` carrying the given scope."""

    def __init__(self, scope: str):
        super().__init__()
        self.scope = scope

    def __call__(self, request):
        try:
            return auth.authenticate(
                auth.token_from_header(request.headers.get("Authorization")), scope=self.scope
            )
        except auth.Unauthenticated as exc:
            raise HttpError(401, str(exc)) from exc
        except auth.Forbidden as exc:
            raise HttpError(403, str(exc)) from exc

    def authenticate(self, request, token):  # pragma: no cover - __call__ does the work
        return None


def rate_limited(request: HttpRequest, exc: auth.RateLimited) -> JsonResponse:
    """The API's answer to auth.RateLimited, which TokenAuth lets through."""
    response = JsonResponse({"detail": str(exc)}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response
