from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self) -> None:
        # telemetry is upstream and must not import the dashboard, so it signals.
        from dashboard.rollups import on_minutes_recomputed
        from telemetry.rollups import minutes_recomputed

        minutes_recomputed.connect(on_minutes_recomputed, dispatch_uid="dashboard-rollups")
