"""Field types shared by the API's schemas."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def _in_utc(value: datetime) -> datetime:
    # PostgreSQL refuses offsets past ±15:59 that Python accepts, so store UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once in UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(_in_utc)]
