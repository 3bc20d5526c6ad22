from django.contrib import admin

from incidents.models import ActionItem, Incident, TimelineEntry


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "status", "severity", "started_at", "detected_at"]
    list_filter = ["status", "severity", "trigger_kind"]
    readonly_fields = ["suspects", "impact", "refreshed_at"]


@admin.register(TimelineEntry)
class TimelineEntryAdmin(admin.ModelAdmin):
    list_display = ["incident", "at", "kind", "summary"]
    list_filter = ["kind"]


@admin.register(ActionItem)
class ActionItemAdmin(admin.ModelAdmin):
    list_display = ["title", "incident", "kind", "owner", "status"]
    list_filter = ["kind", "status"]
