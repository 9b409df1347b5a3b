"""BlobChunk messages of the blob upload streams, decoded from the wire by hand. Pure.

A 200 MB push arrives as 400 BlobChunk messages of 512 KiB, all on the event loop that
serves every call. Protobuf's decoder copies each chunk's bytes twice there (into the
parsed message, then into a new bytes object when ``.data`` is read); this decoder reads
the four fields in place and hands on the bytes as a view of the received message, which
the blob's writer thread hashes and writes without a copy.

It accepts exactly the messages protobuf (upb, the decoder grpc would use) accepts, with
the same values, and refuses the others with the same DecodeError
(tests/hub/test_blob_wire.py holds it to that on edge cases and on random mutations):
fields in any order, a field given again (the last wins), unknown fields of any wire type
(skipped; groups nested at most 100 deep), a known field number with another wire type
(an unknown field). Refused: anything truncated, a varint of more than 10 bytes, a tag or
length of more than 5 bytes, a tag over 32 bits, a length over 2**31 - 1, field number 0,
wire types 6 and 7, an end-group tag that closes no group, a sha256 that is not UTF-8.
Then the checks every request gets (hub.api.interceptors): no NUL in sha256, no number
over what the databases store.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError
from spimeforge.v1 import common_pb2

from hub.api.text_fields import nul_refusal
from hub.api.wide_numbers import MAX_STORED_INT, too_wide_refusal
from hub.service.blobs import Chunk

__all__ = ["decode_chunk"]

_FIELDS = common_pb2.BlobChunk.DESCRIPTOR.fields_by_name
_SHA256, _TOTAL_SIZE, _OFFSET, _DATA = (_FIELDS[name].number for name in ("sha256", "total_size", "offset", "data"))
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = range(6)
_SIZE_OF = {_I64: 8, _I32: 4}
_MASK64 = (1 << 64) - 1
_MAX_TAG = (1 << 32) - 1
_MAX_LENGTH = (1 << 31) - 1
# upb's limit on nested groups (kUpb_WireFormat_DefaultDepthLimit); unknown groups count too.
_MAX_DEPTH = 100


def _corrupt(what: str) -> DecodeError:
    return DecodeError(f"Error parsing message with type 'spimeforge.v1.BlobChunk': {what}")


def _varint(buf: bytes, pos: int, max_bytes: int) -> tuple[int, int]:
    """The varint at ``pos`` (at most ``max_bytes`` long, bits past 64 dropped) and the position after it."""
    value = shift = 0
    for index in range(pos, min(pos + max_bytes, len(buf))):
        byte = buf[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & _MASK64, index + 1
        shift += 7
    raise _corrupt("a varint is truncated or longer than its limit")


def _tag(buf: bytes, pos: int) -> tuple[int, int]:
    tag, pos = _varint(buf, pos, 5)
    if tag > _MAX_TAG:
        raise _corrupt("a tag is over 32 bits")
    return tag, pos


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    """The start and end of the length-delimited value at ``pos``."""
    size, pos = _varint(buf, pos, 5)
    if size > _MAX_LENGTH or pos + size > len(buf):
        raise _corrupt("a length runs past the end of the message")
    return pos, pos + size


def _skip(buf: bytes, pos: int, tag: int, depth: int) -> int:
    """The position after the value of an unknown field whose tag ended at ``pos``."""
    kind = tag & 7
    if kind == _VARINT:
        return _varint(buf, pos, 10)[1]
    if kind == _LEN:
        return _length(buf, pos)[1]
    if kind == _SGROUP:
        return _skip_group(buf, pos, tag, depth - 1)
    size = _SIZE_OF.get(kind)
    if size is None:
        raise _corrupt("an end-group tag without its group, or wire type 6 or 7")
    if pos + size > len(buf):
        raise _corrupt("a fixed-size value runs past the end of the message")
    return pos + size


def _skip_group(buf: bytes, pos: int, tag: int, depth: int) -> int:
    if depth < 0:
        raise _corrupt("groups nested too deep")
    end_tag = tag & ~7 | _EGROUP
    while pos < len(buf):
        inner, pos = _tag(buf, pos)
        if inner == end_tag:
            return pos
        pos = _skip(buf, pos, inner, depth)
    raise _corrupt("a group has no end")


def _utf8(buf: bytes, start: int, end: int) -> str:
    try:
        return buf[start:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _corrupt("String field had bad UTF-8") from exc


def decode_chunk(buf: bytes) -> Chunk:
    """The BlobChunk in ``buf`` (one received message); its data is a view of ``buf``.

    Raises:
        DecodeError: ``buf`` is not a BlobChunk on the wire (protobuf would refuse it too).
        InvalidArgument: sha256 holds a NUL character, or total_size or offset is over
            MAX_STORED_INT (the refusals every request gets).
    """
    sha256, total_size, offset, data = "", 0, 0, (0, 0)
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _tag(buf, pos)
        number, kind = tag >> 3, tag & 7
        if number == 0 or kind == _EGROUP:
            raise _corrupt("field number 0, or an end-group tag without its group")
        if kind == _LEN and number == _DATA:
            data = _length(buf, pos)
            pos = data[1]
        elif kind == _LEN and number == _SHA256:
            start, pos = _length(buf, pos)
            sha256 = _utf8(buf, start, pos)
        elif kind == _VARINT and number == _TOTAL_SIZE:
            total_size, pos = _varint(buf, pos, 10)
        elif kind == _VARINT and number == _OFFSET:
            offset, pos = _varint(buf, pos, 10)
        else:
            pos = _skip(buf, pos, tag, _MAX_DEPTH)
    if "\x00" in sha256:
        raise nul_refusal("sha256")
    for name, value in (("total_size", total_size), ("offset", offset)):
        if value > MAX_STORED_INT:
            raise too_wide_refusal(name, value)
    return Chunk(sha256, total_size, offset, memoryview(buf)[data[0]:data[1]])
