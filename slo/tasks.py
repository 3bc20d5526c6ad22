from celery import shared_task

from slo import evaluation, minutes
from slo.models import SLO

BATCH_SIZE = 50


@shared_task(acks_late=True)
def dispatch_evaluations() -> int:
    """Fan the SLOs out to workers in batches; each batch expires with its minute."""
    slo_ids = list(SLO.objects.order_by("pk").values_list("pk", flat=True))
    for first in range(0, len(slo_ids), BATCH_SIZE):
        evaluate_batch.apply_async(args=[slo_ids[first : first + BATCH_SIZE]], expires=55)
    minutes.prune()
    return len(slo_ids)


@shared_task(acks_late=True)
def evaluate_batch(slo_ids: list[int]) -> int:
    return evaluation.evaluate_all(slo_ids=slo_ids).evaluated
