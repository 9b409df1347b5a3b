"""Unsigned 64-bit request fields above what the databases store. Pure.

Sequence numbers, lease epochs, offsets and sizes are ``uint64`` on the wire, but SQLite and
PostgreSQL store signed 64-bit integers: a value over 2**63 - 1 would fail deep in a store
(an OverflowError on SQLite, NumericValueOutOfRange on PostgreSQL). No honest caller comes
near it, so every request is checked once, as it is decoded, and refused naming the field.
Only the fields that can hold such a number are visited (found once per message type from
its descriptor), so a blob chunk costs two attribute reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from hub.errors import InvalidArgument

__all__ = ["MAX_STORED_INT", "too_wide", "too_wide_refusal"]

MAX_STORED_INT = 2**63 - 1
_UNSIGNED_64 = frozenset({FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64})
# per message type: the fields that hold such a number or a message that may
_PATHS: dict[str, tuple[FieldDescriptor, ...]] = {}


def too_wide_refusal(field: str, value: int) -> InvalidArgument:
    """The refusal of a request whose field ``field`` holds ``value``, over MAX_STORED_INT."""
    return InvalidArgument(f"{field} is {value}, over the largest number the hub stores ({MAX_STORED_INT})",
                           reason="NUMBER_TOO_LARGE", field=field)


def _paths(descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
    known = _PATHS.get(descriptor.full_name)
    if known is not None:
        return known
    _PATHS[descriptor.full_name] = ()  # a message type that contains itself: its inner copies are not visited
    found: list[FieldDescriptor] = []
    for field in descriptor.fields:
        if field.type in _UNSIGNED_64:
            found.append(field)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            inner = field.message_type
            if inner.GetOptions().map_entry:
                value = inner.fields_by_name["value"]
                if value.type in _UNSIGNED_64 or (value.type == FieldDescriptor.TYPE_MESSAGE and _paths(value.message_type)):
                    found.append(field)
            elif _paths(inner):
                found.append(field)
    _PATHS[descriptor.full_name] = paths = tuple(found)
    return paths


def _is_set(message: Any, field: FieldDescriptor) -> bool:
    """Whether a field may hold anything: the member of its oneof that is set, a singular message
    that is present; scalars and repeated fields always (reading them copies nothing big)."""
    if field.containing_oneof is not None:
        return bool(message.WhichOneof(field.containing_oneof.name) == field.name)
    if field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
        return bool(message.HasField(field.name))
    return True


def _items(field: FieldDescriptor, values: Any, name: str) -> Iterator[tuple[str, Any]]:
    """Each item and its name, named only when asked (the counts are checked before: hub.api.item_counts)."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return ((f"{name}[{key!r}]", value) for key, value in values.items())
    if field.is_repeated:
        return ((f"{name}[{i}]", value) for i, value in enumerate(values))
    return iter(((name, values),))


def too_wide(message: Any, prefix: str = "") -> tuple[str, int] | None:
    """The first unsigned 64-bit field of ``message`` over MAX_STORED_INT ("ack.hub_seq") and its
    value, or None. Only the fields that can hold such a number are read (never a blob's bytes)."""
    for field in _paths(message.DESCRIPTOR):
        if not _is_set(message, field):
            continue
        for name, value in _items(field, getattr(message, field.name), prefix + field.name):
            if isinstance(value, int):
                if value > MAX_STORED_INT:
                    return name, value
            elif (found := too_wide(value, name + ".")) is not None:
                return found
    return None
