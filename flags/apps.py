from django.apps import AppConfig


class FlagsConfig(AppConfig):
    name = "flags"

    def ready(self) -> None:
        # deployments sits below flags and cannot import it: the gate's
        # ?flag= branch is registered from here.
        from deployments import gate, suspects
        from flags import gate as flag_gate
        from flags import suspects as flag_suspects

        gate.register_change_check("flag", flag_gate)
        # Flag changes are ranked next to deploys for every regression.
        suspects.register_change_kind(flag_suspects.KIND, flag_suspects.rank)
