from django.contrib import admin

from slo.models import SLO, Alert


@admin.register(SLO)
class SLOAdmin(admin.ModelAdmin):
    list_display = ["name", "service", "route", "sli", "objective", "window", "budgeting"]
    list_filter = ["sli", "budgeting", "service"]
    search_fields = ["name", "display_name", "service", "route"]
    readonly_fields = ["created_at", "updated_at", "last_evaluated_at"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["slo", "severity", "windows", "long_burn_rate", "fired_at", "resolved_at"]
    list_filter = ["severity", "resolved_at"]
    list_select_related = ["slo"]
