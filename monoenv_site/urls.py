from django.contrib import admin
from django.urls import include, path

from monoenv_site.api import api
from telemetry import views as telemetry_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/traces", telemetry_views.otlp_traces, name="otlp-traces"),
    path("api/v1/", api.urls),
    path("", include("dashboard.urls")),
]
