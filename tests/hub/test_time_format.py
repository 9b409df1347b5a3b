"""hub.service.common.format_time: RFC 3339 UTC seconds, and the text of one second made once."""

from __future__ import annotations

import datetime as dt

import pytest

from hub.service.common import format_time, parse_time

UTC = dt.UTC


@pytest.mark.parametrize(("moment", "text"), [
    (dt.datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC), "2026-12-01T08:00:00Z"),
    (dt.datetime(2026, 12, 1, 8, 0, 0, 999_999, tzinfo=UTC), "2026-12-01T08:00:00Z"),  # truncated, not rounded
    (dt.datetime(2026, 12, 1, 10, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2026-12-01T08:00:01Z"),
    (dt.datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC), "1969-12-31T23:59:59Z"),  # before the epoch
    (dt.datetime(1970, 1, 1, tzinfo=UTC), "1970-01-01T00:00:00Z"),
    (dt.datetime.max.replace(tzinfo=UTC), "9999-12-31T23:59:59Z"),
])
def test_format_time_is_the_utc_second(moment: dt.datetime, text: str) -> None:
    assert format_time(moment) == text
    assert format_time(moment) == text  # asked again (the second's text is kept)


def test_moments_of_one_second_share_its_text_and_the_next_second_has_its_own() -> None:
    """The hub formats "now" for every session it opens or closes: thousands of times in one second
    while agents reconnect, and strftime costs ten times the lookup of the second's text."""
    start = dt.datetime(2026, 12, 1, 8, 0, 0, 100, tzinfo=UTC)
    first = format_time(start)
    assert format_time(start + dt.timedelta(microseconds=900_000)) is first
    assert format_time(start.astimezone(dt.timezone(dt.timedelta(hours=-5)))) is first  # the same instant
    assert format_time(start + dt.timedelta(seconds=1)) == "2026-12-01T08:00:01Z"
    assert format_time(start) == first  # back to an earlier second: formatted again, the same text
    assert parse_time(first) == start.replace(microsecond=0)
