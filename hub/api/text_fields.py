"""Text fields of a request that hold a NUL character. Pure.

PostgreSQL refuses NUL in text where SQLite stores it: every request is checked once, as it
is decoded, and refused naming the field, so both databases give the same answer. Bytes
fields (blob chunks) are never read: reading one copies it.
"""

from __future__ import annotations

from typing import Any

from hub.errors import InvalidArgument

__all__ = ["nul_field", "nul_refusal"]


def nul_refusal(field: str) -> InvalidArgument:
    """The refusal of a request whose text field ``field`` ("files[2].path") holds a NUL."""
    return InvalidArgument(f"{field} contains a NUL character; remove it", reason="NUL_CHARACTER", field=field)


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _nul_in_map(values: Any, name: str, field: Any) -> str | None:
    value_field = field.message_type.fields_by_name["value"]
    for key, value in values.items():
        where = f"{name}[{key!r}]"
        if _has_nul(key) or _has_nul(value):
            return where
        if value_field.type == value_field.TYPE_MESSAGE and (found := nul_field(value, where + ".")):
            return found
    return None


def _nul_in(values: Any, name: str, field: Any) -> str | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return _nul_in_map(values, name, field)
    items = values if field.is_repeated else (values,)
    for index, item in enumerate(items):
        where = f"{name}[{index}]" if field.is_repeated else name
        if _has_nul(item):
            return where
        if field.type == field.TYPE_MESSAGE and (found := nul_field(item, where + ".")):
            return found
    return None


def nul_field(message: Any, prefix: str = "") -> str | None:
    """The first text field of a protobuf message that holds a NUL character ("files[2].path"), or None."""
    for field in message.DESCRIPTOR.fields:
        if field.type not in (field.TYPE_STRING, field.TYPE_MESSAGE):
            continue  # bytes fields (blob chunks) are never touched: reading one copies it
        if field.type == field.TYPE_MESSAGE and not field.is_repeated and not message.HasField(field.name):
            continue
        values = getattr(message, field.name)
        if field.type == field.TYPE_STRING and not values:
            continue
        found = _nul_in(values, prefix + field.name, field)
        if found:
            return found
    return None
