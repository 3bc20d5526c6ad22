from django.apps import AppConfig


class SloConfig(AppConfig):
    name = "slo"
