"""Unsigned 64-bit request fields above what the databases store. Pure.

Sequence numbers, lease epochs, offsets and sizes are ``uint64`` on the wire, but SQLite and
PostgreSQL store signed 64-bit integers: a value over 2**63 - 1 would fail deep in a store
(an OverflowError on SQLite, NumericValueOutOfRange on PostgreSQL). No honest caller comes
near it, so every request is checked once, as it is decoded, and refused naming the field.
Only the fields that can hold such a number are visited (found once per message type from
its descriptor), so a blob chunk costs two attribute reads.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = ["MAX_STORED_INT", "too_wide"]

MAX_STORED_INT = 2**63 - 1
_UNSIGNED_64 = frozenset({FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64})
# per message type: (field, holds the numbers itself) for the fields that hold or contain one
_PATHS: dict[str, tuple[tuple[FieldDescriptor, bool], ...]] = {}


def _paths(descriptor: Descriptor) -> tuple[tuple[FieldDescriptor, bool], ...]:
    known = _PATHS.get(descriptor.full_name)
    if known is not None:
        return known
    _PATHS[descriptor.full_name] = ()  # a message type that contains itself: its inner copies are not visited
    found: list[tuple[FieldDescriptor, bool]] = []
    for field in descriptor.fields:
        if field.type in _UNSIGNED_64:
            found.append((field, True))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            inner = field.message_type
            if inner.GetOptions().map_entry:
                value = inner.fields_by_name["value"]
                if value.type in _UNSIGNED_64 or (value.type == FieldDescriptor.TYPE_MESSAGE and _paths(value.message_type)):
                    found.append((field, False))
            elif _paths(inner):
                found.append((field, False))
    _PATHS[descriptor.full_name] = paths = tuple(found)
    return paths


def _items(message: Any, field: FieldDescriptor, name: str) -> list[tuple[str, Any]]:
    values = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return [(f"{name}[{key!r}]", value) for key, value in values.items()]
    if field.is_repeated:
        return [(f"{name}[{i}]", value) for i, value in enumerate(values)]
    if field.type == FieldDescriptor.TYPE_MESSAGE and not message.HasField(field.name):
        return []
    return [(name, values)]


def too_wide(message: Any, prefix: str = "") -> tuple[str, int] | None:
    """The first unsigned 64-bit field of ``message`` over MAX_STORED_INT ("ack.hub_seq") and its
    value, or None."""
    for field, scalar in _paths(message.DESCRIPTOR):
        for name, value in _items(message, field, prefix + field.name):
            if isinstance(value, int):
                if value > MAX_STORED_INT:
                    return name, value
            elif not scalar and (found := too_wide(value, name + ".")):
                return found
    return None
