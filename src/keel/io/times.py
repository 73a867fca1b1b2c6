"""Times as Keel compares them: naive timestamps in UTC, whatever precision or offset they had."""

from __future__ import annotations

import pandas as pd

from keel.errors import DataError


def naive_utc(values: pd.Series | list) -> pd.Series:
    """Times as naive UTC timestamps, from datetimes or ISO 8601 text.

    The text may have any precision, with or without offsets.
    """
    try:
        parsed = pd.to_datetime(pd.Series(values), utc=True, format="ISO8601")
    except (ValueError, TypeError) as error:
        raise DataError(f"times must be ISO 8601 date-times: {error}") from None
    return parsed.dt.tz_convert(None)


def as_of_time(value: object) -> pd.Timestamp:
    """One time as a naive UTC timestamp (an offset is converted, no offset is read as UTC)."""
    return naive_utc([value]).iloc[0]
