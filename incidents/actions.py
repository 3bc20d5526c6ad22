"""Action items of post-mortems: added and changed by people, listed across incidents."""

from datetime import datetime

from django.db.models import Case, IntegerField, When

from incidents.models import ActionItem, ActionStatus, Incident

UNFINISHED_FIRST = Case(
    When(status__in=[ActionStatus.OPEN, ActionStatus.IN_PROGRESS], then=0),
    default=1,
    output_field=IntegerField(),
)


def listed(*, status: str | None = None):
    items = ActionItem.objects.annotate(finished=UNFINISHED_FIRST).order_by(
        "finished", "-incident__detected_at", "id"
    )
    return items.filter(status=status) if status else items


def add(incident: Incident, fields: dict, *, now: datetime) -> ActionItem:
    if incident.acknowledged_at is None:
        Incident.objects.filter(pk=incident.pk).update(acknowledged_at=now)
    return ActionItem.objects.create(incident=incident, **fields)


def change(item: ActionItem, fields: dict) -> ActionItem:
    for name, value in fields.items():
        if value is not None:
            setattr(item, name, value)
    item.save()
    return item
