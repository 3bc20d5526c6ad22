"""Token buckets in PostgreSQL, shared by every process that serves Monoenv.

A bucket holds up to `burst` tokens and refills at `rate` tokens a second
(rate > 0). Taking a token is one upsert, which writes nothing when the bucket
is empty; only then does a second statement read how long to wait.
"""

import math
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from telemetry.models import RateBucket

# The refill, spelled out in both statements so that each is one literal.
_TAKE = """
    INSERT INTO telemetry_ratebucket AS bucket (key, tokens, updated_at)
    VALUES (%(key)s, %(burst)s - %(cost)s, statement_timestamp())
    ON CONFLICT (key) DO UPDATE
       SET tokens = LEAST(%(burst)s, bucket.tokens + %(rate)s
                          * extract(epoch FROM statement_timestamp() - bucket.updated_at))
                    - %(cost)s,
           updated_at = statement_timestamp()
     WHERE LEAST(%(burst)s, bucket.tokens + %(rate)s
                 * extract(epoch FROM statement_timestamp() - bucket.updated_at)) >= %(cost)s
    RETURNING tokens
"""
_PEEK = """
    SELECT LEAST(%(burst)s, bucket.tokens + %(rate)s
                 * extract(epoch FROM statement_timestamp() - bucket.updated_at))
    FROM telemetry_ratebucket AS bucket WHERE key = %(key)s
"""


def take(key: str, *, rate: float, burst: float, cost: float = 1) -> float:
    """Take `cost` tokens: 0 when they were there, else the seconds to wait for them."""
    params = {"key": key, "rate": rate, "burst": burst, "cost": cost}
    with connection.cursor() as cursor:
        cursor.execute(_TAKE, params)
        if cursor.fetchone() is not None:
            return 0
        # Over the limit: the upsert wrote nothing, and this read is the rare path.
        cursor.execute(_PEEK, params)
        row = cursor.fetchone()
    return _wait(row[0] if row else burst, rate=rate, cost=cost)


def wait(key: str, *, rate: float, burst: float, cost: float = 1) -> float:
    """Seconds until `cost` tokens are there, without taking any; 0 if they are now."""
    with connection.cursor() as cursor:
        cursor.execute(_PEEK, {"key": key, "rate": rate, "burst": burst})
        row = cursor.fetchone()
    return _wait(row[0] if row else burst, rate=rate, cost=cost)


def _wait(tokens: float, *, rate: float, cost: float) -> float:
    return 0 if tokens >= cost else (cost - tokens) / rate


def retry_after_seconds(wait_seconds: float) -> int:
    """A whole number of seconds for Retry-After, never 0."""
    return max(1, math.ceil(wait_seconds))


def prune(*, idle_for: timedelta) -> int:
    """Delete buckets untouched for this long: they are full again, as a new one is."""
    return RateBucket.objects.filter(updated_at__lt=timezone.now() - idle_for).delete()[0]
