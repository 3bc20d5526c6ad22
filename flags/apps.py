from django.apps import AppConfig


class FlagsConfig(AppConfig):
    name = "flags"

    def ready(self) -> None:
        # deployments sits below flags and cannot import it: the gate's
        # ?flag= branch is registered from here.
        from deployments import gate
        from flags import gate as flag_gate

        gate.register_change_check("flag", flag_gate)
