"""Routes of the Incidents, incident and Delivery pages (added to dashboard/urls.py)."""

from django.urls import path

from dashboard import incident_views as views

urlpatterns = [
    path("incidents/", views.incidents, name="incidents"),
    path("incidents.json", views.incidents_json, name="incidents-json"),
    path("incidents/open.json", views.open_incidents_json, name="open-incidents-json"),
    path("incidents/declare", views.declare, name="incident-declare"),
    path("incidents/<int:incident_id>/", views.incident, name="incident"),
    path("incidents/<int:incident_id>/data.json", views.incident_json, name="incident-json"),
    path("incidents/<int:incident_id>/change", views.change, name="incident-change"),
    path("incidents/<int:incident_id>/notes", views.note, name="incident-note"),
    path("incidents/<int:incident_id>/postmortem", views.edit_postmortem,
         name="incident-postmortem"),  # fmt: skip
    path("incidents/<int:incident_id>/postmortem.md", views.postmortem_markdown,
         name="incident-postmortem-md"),  # fmt: skip
    path("incidents/<int:incident_id>/action-items", views.action_item,
         name="incident-action-item"),  # fmt: skip
    path("delivery/", views.delivery, name="delivery"),
    path("delivery.json", views.delivery_json, name="delivery-json"),
]
