from django.contrib import admin

from flags.models import FlagChange, FlagSettings


@admin.register(FlagChange)
class FlagChangeAdmin(admin.ModelAdmin):
    list_display = ("flag", "at", "source", "environment", "control", "verdict")
    list_filter = ("source", "verdict")
    search_fields = ("flag", "actor", "description")


@admin.register(FlagSettings)
class FlagSettingsAdmin(admin.ModelAdmin):
    list_display = ("flag", "control")
    search_fields = ("flag",)
