from django.contrib import admin

from slo.models import SLO, Alert, Delivery, WebhookTarget


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


@admin.register(WebhookTarget)
class WebhookTargetAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "url", "enabled"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["alert", "target", "event", "status", "attempts", "response_status", "sent_at"]
    list_filter = ["status", "event"]
    list_select_related = ["alert__slo", "target"]
    readonly_fields = ["payload", "last_error"]
