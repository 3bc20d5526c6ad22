from django.apps import AppConfig


class SloConfig(AppConfig):
    name = "slo"
    verbose_name = "SLOs"

    def ready(self) -> None:
        # telemetry is upstream and must not import slo, so it signals instead.
        from slo.minutes import on_minutes_recomputed
        from telemetry.rollups import minutes_recomputed

        minutes_recomputed.connect(on_minutes_recomputed, dispatch_uid="slo-minutes")
