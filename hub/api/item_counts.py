"""Repeated fields of a request over their most items (hub.limits.ITEM_LIMITS). Pure.

A request of 8 MiB holds about 4 million empty items of one repeated field; protobuf decodes
them in C in a fraction of a second, but any Python walk over them (the NUL check, the number
check, a conversion) takes seconds on the event loop and every other caller waits. So each
request is counted first, as it is decoded: ``len()`` of every repeated and map field, and of
those inside the items of a repeated field only once the field's own count is within its
maximum. The walk is bounded by the maxima, never by what the caller sent.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from hub.limits import ITEM_LIMITS, MAX_FILES

__all__ = ["UNLISTED_MAX_ITEMS", "too_many"]

UNLISTED_MAX_ITEMS = MAX_FILES
"""Most items of a repeated field missing from ITEM_LIMITS (tests keep the table complete)."""

# per message type: (field, its most items or None for a singular message, whether its items hold repeated fields)
_Plan = tuple[tuple[FieldDescriptor, int | None, bool], ...]
_PLANS: dict[str, _Plan] = {}


def _plan(descriptor: Descriptor) -> _Plan:
    known = _PLANS.get(descriptor.full_name)
    if known is not None:
        return known
    _PLANS[descriptor.full_name] = ()  # a message type that contains itself: its inner copies are not counted
    limits = ITEM_LIMITS.get(descriptor.name, {})
    found: list[tuple[FieldDescriptor, int | None, bool]] = []
    for field in descriptor.fields:
        inner = field.message_type
        is_map = inner is not None and inner.GetOptions().map_entry
        if is_map:
            value = inner.fields_by_name["value"]
            nested = value.message_type is not None and bool(_plan(value.message_type))
        else:
            nested = inner is not None and bool(_plan(inner))
        if field.is_repeated:
            found.append((field, limits.get(field.name, UNLISTED_MAX_ITEMS), nested))
        elif nested:
            found.append((field, None, True))
    _PLANS[descriptor.full_name] = plan = tuple(found)
    return plan


def too_many(message: Any) -> tuple[str, int, int] | None:
    """The first repeated field of ``message`` with more items than it may hold, or None.

    Returns:
        (limit name as in ITEM_LIMITS, e.g. "PushRequest.files"; items sent; most items allowed).
    """
    for field, maximum, nested in _plan(message.DESCRIPTOR):
        if maximum is None:
            if message.HasField(field.name) and (found := too_many(getattr(message, field.name))):
                return found
            continue
        values = getattr(message, field.name)
        if len(values) > maximum:
            return f"{message.DESCRIPTOR.name}.{field.name}", len(values), maximum
        if nested:
            items = values.values() if field.message_type.GetOptions().map_entry else values
            for item in items:
                if (found := too_many(item)) is not None:
                    return found
    return None
