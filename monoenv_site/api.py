"""The JSON API at /api/v1/, with its OpenAPI schema at /api/v1/openapi.json."""

from ninja import NinjaAPI

from deployments.api import router as deployments_router
from slo.api import router as slo_router
from telemetry.api import router as telemetry_router

api = NinjaAPI(title="Monoenv API", version="1", urls_namespace="api")
api.add_router("/", telemetry_router)
api.add_router("/", slo_router)
api.add_router("/", deployments_router)
