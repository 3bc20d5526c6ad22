from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard import incident_urls, views
from dashboard.login import LoginForm

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("overview.json", views.overview_json, name="overview-json"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            authentication_form=LoginForm, redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("assets/<str:name>", views.asset, name="asset"),
    path("services/<path:service>/", views.service, name="service"),
    path("services/<path:service>/data.json", views.service_json, name="service-json"),
    path("budgets/", views.budgets, name="budgets"),
    path("budgets.json", views.budgets_json, name="budgets-json"),
    path("slos/<int:slo_id>/", views.slo, name="slo"),
    path("slos/<int:slo_id>/data.json", views.slo_json, name="slo-json"),
    path("deploys/", views.deploys, name="deploys"),
    path("deploys.json", views.deploys_json, name="deploys-json"),
    path("deploys/<int:deploy_id>/", views.deploy, name="deploy"),
    path("deploys/<int:deploy_id>/data.json", views.deploy_json, name="deploy-json"),
    path("flags/", views.flags, name="flags"),
    path("flags.json", views.flags_json, name="flags-json"),
    path("flags/<path:flag>/", views.flag, name="flag"),
    path("flags/<path:flag>/data.json", views.flag_json, name="flag-json"),
    path("traces/", views.traces, name="traces"),
    path("traces/search.json", views.traces_json, name="traces-json"),
    path("traces/<str:trace_id>/", views.trace, name="trace"),
    path("traces/<str:trace_id>/data.json", views.trace_json, name="trace-json"),
]
urlpatterns += incident_urls.urlpatterns
