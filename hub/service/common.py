"""Shared pieces of the use cases: the clock, time formats, the caller."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable

from hub.errors import InvalidArgument

__all__ = ["Clock", "format_time", "parse_time", "system_clock"]

Clock = Callable[[], dt.datetime]
_RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z", re.ASCII)


def system_clock() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(dt.UTC)


# The second formatted last and its text: the hub formats "now" a few times per agent session it
# opens or closes, thousands a second in a reconnect storm, and strftime costs ten times the lookup.
_last_formatted: tuple[int, str] = (0, "")


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 UTC with seconds precision and "Z"."""
    global _last_formatted
    second = math.floor(moment.timestamp())
    last = _last_formatted  # one read: another thread may replace it meanwhile
    if last[0] == second and last[1]:
        return last[1]
    text = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _last_formatted = (second, text)
    return text


def parse_time(text: str, field: str = "created_at") -> dt.datetime:
    """Parse RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ".

    Raises:
        InvalidArgument: any other format.
    """
    if not isinstance(text, str) or not _RFC3339_Z.match(text):
        raise InvalidArgument(f"{field} {text!r:.40} must be RFC 3339 UTC like 2026-01-31T12:00:00Z", field=field)
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise InvalidArgument(f"{field} {text!r} is not a real date and time", field=field) from exc
