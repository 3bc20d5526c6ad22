"""What a deploy finding compares: the names, defined once. Pure code, no imports.

deployments/models.py turns this into the `Metric` TextChoices of Finding.metric.
"""

from enum import StrEnum


class Metric(StrEnum):
    ERROR_RATE = "error_rate"
    LATENCY_P50 = "latency_p50"
    LATENCY_P95 = "latency_p95"
    LATENCY_P99 = "latency_p99"
    NEW_ERROR_TYPE = "new_error_type"
    SERVED_REQUESTS = "served_requests"
    ROLLOUT_THROUGHPUT = "rollout_throughput"
    ROLLOUT_ERROR_RATE = "rollout_error_rate"
    TRANSIENT_REGRESSION = "transient_regression"
