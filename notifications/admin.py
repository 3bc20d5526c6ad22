from django.contrib import admin

from notifications.models import Delivery, WebhookTarget


@admin.register(WebhookTarget)
class WebhookTargetAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "url", "enabled"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "subject", "target", "event", "status", "attempts", "response_status", "sent_at",
    ]  # fmt: skip
    list_filter = ["status", "event"]
    search_fields = ["subject"]
    list_select_related = ["target"]
    readonly_fields = ["payload", "last_error"]
