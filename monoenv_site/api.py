"""The JSON API at /api/v1/, with its OpenAPI schema at /api/v1/openapi.json."""

from ninja import NinjaAPI

from deployments.api import router as deployments_router
from flags.api import router as flags_router
from incidents.api import router as incidents_router
from monoenv_site.nul import NulRefusingParser
from slo.api import router as slo_router
from telemetry import auth
from telemetry.api import router as telemetry_router

# No docs page: django-ninja's loads Swagger UI from a CDN, and Monoenv must
# work offline. The schema itself is public; any OpenAPI viewer can read it.
api = NinjaAPI(
    title="Monoenv API",
    version="1",
    urls_namespace="api",
    parser=NulRefusingParser(),
    docs_url=None,
)
api.add_exception_handler(auth.RateLimited, auth.rate_limited)
api.add_router("/", telemetry_router)
api.add_router("/", slo_router)
api.add_router("/", deployments_router)
api.add_router("/", flags_router)
api.add_router("/", incidents_router)
