from django.contrib import admin
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from monoenv_site.api import api
from telemetry import views as telemetry_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/traces", csrf_exempt(telemetry_views.otlp_traces), name="otlp-traces"),
    path("v1/metrics", csrf_exempt(telemetry_views.otlp_metrics), name="otlp-metrics"),
    path("v1/logs", csrf_exempt(telemetry_views.otlp_logs), name="otlp-logs"),
    path("api/v1/", api.urls),
    path("", include("dashboard.urls")),
]
