"""Field types shared by the API's schemas."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

# Deploy and commit times are real moments: refusing the far past and future
# also keeps the date arithmetic around them (upsert windows) from overflowing.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _in_utc(value: datetime) -> datetime:
    # PostgreSQL refuses offsets past ±15:59 that Python accepts, so store UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once in UTC") from None
    if not EARLIEST <= value < LATEST:
        raise ValueError("the time must be between 1970 and 9000")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_in_utc)]
