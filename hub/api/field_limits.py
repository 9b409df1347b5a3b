"""Every request message checked against hub.limits.FIELD_LIMITS as it is decoded. Pure.

The API's interceptor applies it to every request of every method (hub.api.interceptors), so
a servicer cannot forget it: Records.GetRecord once answered an overlong design with a slug
error that named no limit, because the servicer registered overrode the one that checked.
Repeated fields are counted before (hub.api.item_counts), so the walk is bounded.
"""

from __future__ import annotations

from typing import Any

from hub import limits

__all__ = ["check_request"]


def check_request(message: Any) -> None:
    """Check a request (and the messages inside it) against FIELD_LIMITS.

    Raises:
        InvalidArgument: a field over its documented maximum, naming the limit.
    """
    name = message.DESCRIPTOR.name
    known = limits.FIELD_LIMITS.get(name, {})
    limits.check_fields(name, {f: getattr(message, f) for f in known if not f.endswith("[]")})
    for field in message.DESCRIPTOR.fields:
        if field.message_type is None or field.message_type.name not in limits.FIELD_LIMITS:
            continue
        if field.is_repeated:
            for item in getattr(message, field.name):
                check_request(item)
        elif message.HasField(field.name):
            check_request(getattr(message, field.name))
