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
# How a field on a path is read: a number, a singular message (visited when present), repeated
# numbers or messages, a map (its values).
_SCALAR, _MESSAGE, _REPEATED, _MAP = range(4)
_Path = tuple[str, str, int]
"""(field name, the name of its oneof or "", how it is read)"""
# per message type: the fields that hold such a number or a message that may, as plain values: every
# agent message is checked, and reading a descriptor's attributes costs more than the check itself
# (a heartbeat: 35 µs read from the descriptors, 3 µs from these)
_PATHS: dict[str, tuple[_Path, ...]] = {}
_BY_TYPE: dict[type, tuple[_Path, ...]] = {}


def too_wide_refusal(field: str, value: int) -> InvalidArgument:
    """The refusal of a request whose field ``field`` holds ``value``, over MAX_STORED_INT."""
    return InvalidArgument(f"{field} is {value}, over the largest number the hub stores ({MAX_STORED_INT})",
                           reason="NUMBER_TOO_LARGE", field=field)


def _paths(descriptor: Descriptor) -> tuple[_Path, ...]:
    known = _PATHS.get(descriptor.full_name)
    if known is not None:
        return known
    _PATHS[descriptor.full_name] = ()  # a message type that contains itself: its inner copies are not visited
    found: list[_Path] = []
    for field in descriptor.fields:
        oneof = field.containing_oneof.name if field.containing_oneof is not None else ""
        repeated = _REPEATED if field.is_repeated else _SCALAR
        if field.type in _UNSIGNED_64:
            found.append((field.name, oneof, repeated))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            inner = field.message_type
            if inner.GetOptions().map_entry:
                value = inner.fields_by_name["value"]
                if value.type in _UNSIGNED_64 or (value.type == FieldDescriptor.TYPE_MESSAGE and _paths(value.message_type)):
                    found.append((field.name, oneof, _MAP))
            elif _paths(inner):
                found.append((field.name, oneof, _REPEATED if field.is_repeated else _MESSAGE))
    _PATHS[descriptor.full_name] = paths = tuple(found)
    return paths


def _paths_of(message: Any) -> tuple[_Path, ...]:
    paths = _BY_TYPE.get(type(message))
    if paths is None:
        paths = _BY_TYPE[type(message)] = _paths(message.DESCRIPTOR)
    return paths


def _items(values: Any, how: int, name: str) -> Iterator[tuple[str, Any]]:
    """Each item and its name, named only when asked (the counts are checked before: hub.api.item_counts)."""
    if how == _MAP:
        return ((f"{name}[{key!r}]", value) for key, value in values.items())
    if how == _REPEATED:
        return ((f"{name}[{i}]", value) for i, value in enumerate(values))
    return iter(((name, values),))


def too_wide(message: Any, prefix: str = "") -> tuple[str, int] | None:
    """The first unsigned 64-bit field of ``message`` over MAX_STORED_INT ("ack.hub_seq") and its
    value, or None. Only the fields that can hold such a number are read (never a blob's bytes): of a
    oneof only its member that is set, a singular message only when present."""
    chosen: dict[str, str | None] = {}
    for name, oneof, how in _paths_of(message):
        if oneof:
            if oneof not in chosen:
                chosen[oneof] = message.WhichOneof(oneof)
            if chosen[oneof] != name:
                continue
        elif how == _MESSAGE and not message.HasField(name):
            continue
        for item_name, value in _items(getattr(message, name), how, prefix + name):
            if isinstance(value, int):
                if value > MAX_STORED_INT:
                    return item_name, value
            elif (found := too_wide(value, item_name + ".")) is not None:
                return found
    return None
