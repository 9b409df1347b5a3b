"""The blob streams' hand decoder (hub/api/blob_wire.py) accepts and refuses exactly what protobuf does.

Every case is decoded both ways: by protobuf (BlobChunk.FromString, then the NUL and number checks
every request gets) and by the hand decoder; the outcomes must be equal (the same values, or the
same refusal). Then the refusals through a real hub, on both databases: INVALID_ARGUMENT, and
nothing stored.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from spimeforge.v1 import common_pb2, designs_pb2

from hub.api.blob_wire import decode_chunk
from hub.api.text_fields import nul_field
from hub.api.wide_numbers import MAX_STORED_INT, too_wide
from hub.errors import InvalidArgument
from tests.hub.harness import InProcessHub, sha
from tests.hub.refusal import refused

Outcome = tuple[object, ...]
BAD = grpc.StatusCode.INVALID_ARGUMENT
DATA = b"solid"
SHA = sha(DATA)


def _varint(n: int, extra: int = 0) -> bytes:
    """``n`` as a varint, padded with ``extra`` more bytes (an overlong encoding of the same value)."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    if extra:
        out[-1] |= 0x80
        out += b"\x80" * (extra - 1) + b"\x00"
    return bytes(out)


def _key(number: int, wire_type: int, extra: int = 0) -> bytes:
    return _varint(number << 3 | wire_type, extra)


def _len(number: int, body: bytes) -> bytes:
    return _key(number, 2) + _varint(len(body)) + body


def by_protobuf(wire: bytes) -> Outcome:
    """What the hub answered before the hand decoder: protobuf's decoding, then the generic checks."""
    try:
        message = common_pb2.BlobChunk.FromString(wire)
    except DecodeError:
        return ("undecodable",)
    if field := nul_field(message):
        return ("refused", "NUL_CHARACTER", field)
    if wide := too_wide(message):
        return ("refused", "NUMBER_TOO_LARGE", wide[0])
    return ("ok", message.sha256, message.total_size, message.offset, message.data)


def by_hand(wire: bytes) -> Outcome:
    try:
        chunk = decode_chunk(wire)
    except DecodeError:
        return ("undecodable",)
    except InvalidArgument as exc:
        return ("refused", exc.reason, exc.field)
    return ("ok", chunk.sha256, chunk.total_size, chunk.offset, bytes(chunk.data))


def test_the_decoder_knows_every_field_of_blobchunk() -> None:
    # A new field in common.proto must be taught to hub/api/blob_wire.py (it would be skipped as unknown).
    fields = {(f.name, f.number, f.type) for f in common_pb2.BlobChunk.DESCRIPTOR.fields}
    assert fields == {("sha256", 1, FieldDescriptor.TYPE_STRING), ("total_size", 2, FieldDescriptor.TYPE_UINT64),
                      ("offset", 3, FieldDescriptor.TYPE_UINT64), ("data", 4, FieldDescriptor.TYPE_BYTES)}


def test_the_data_is_a_view_of_the_received_message_not_a_copy() -> None:
    wire = common_pb2.BlobChunk(sha256=SHA, total_size=5, offset=0, data=DATA).SerializeToString()
    chunk = decode_chunk(wire)
    assert isinstance(chunk.data, memoryview) and chunk.data.obj is wire and chunk.data == DATA
    assert (chunk.sha256, chunk.total_size, chunk.offset) == (SHA, 5, 0)


WELL_FORMED: dict[str, bytes] = {
    "empty message": b"",
    "fields in reverse order": _len(4, DATA) + _key(3, 0) + _varint(7) + _key(2, 0) + _varint(5) + _len(1, SHA.encode()),
    "repeated fields: the last wins": _len(4, b"old") + _len(4, DATA) + _len(1, b"a") + _len(1, b"b")
    + _key(2, 0) + _varint(1) + _key(2, 0) + _varint(2),
    "unknown fields of every wire type": _key(5, 0) + _varint(300) + _key(6, 1) + bytes(8) + _len(7, b"\xff\xfe")
    + _key(8, 3) + _key(1, 0) + _varint(1) + _key(8, 4) + _key(9, 5) + bytes(4) + _len(4, DATA),
    "a known number with another wire type is unknown": _key(4, 0) + _varint(9) + _key(1, 5) + bytes(4)
    + _key(2, 2) + _varint(1) + b"x" + _key(3, 1) + bytes(8),
    "a known number as a group is unknown": _key(1, 3) + _len(4, b"inside") + _key(1, 4) + _len(4, DATA),
    "the largest field number": _key(2**29 - 1, 0) + _varint(1),
    "overlong tag and varints": _key(4, 2, extra=4) + _varint(len(DATA), extra=4) + DATA
    + _key(2, 0) + _varint(5, extra=9),
    "a 10-byte varint keeps its low 64 bits": _key(2, 0) + b"\xff" * 9 + b"\x7f",
    "groups nested 100 deep": _key(5, 3) * 100 + _key(5, 4) * 100,
    "field 0 inside an unknown group": _key(5, 3) + b"\x00\x00" + _key(5, 4),
    "a NUL in sha256": _len(1, b"ab\x00") + _len(4, DATA),
    "total_size over what the databases store": _key(2, 0) + _varint(MAX_STORED_INT + 1) + _key(3, 0) + _varint(2**64 - 1),
    "offset over what the databases store": _key(3, 0) + _varint(2**63),
    "UTF-8 in sha256": _len(1, "é".encode()),
}
MALFORMED: dict[str, bytes] = {
    "field number 0": b"\x00\x01",
    "wire type 6": b"\x0e",
    "wire type 7": b"\x0f",
    "an end-group tag without its group": _key(4, 4),
    "a group without its end": _key(5, 3) + _key(1, 0) + b"\x01",
    "a group closed by another number": _key(5, 3) + _key(6, 4),
    "groups nested 101 deep": _key(5, 3) * 101 + _key(5, 4) * 101,
    "a varint of 11 bytes": _key(2, 0) + b"\xff" * 10 + b"\x01",
    "a truncated varint": _key(2, 0) + b"\x80",
    "a tag of 6 bytes": b"\x80\x80\x80\x80\x80\x01\x00",
    "a tag over 32 bits": b"\xf8\xff\xff\xff\x1f\x00",
    "a length of 6 bytes": _key(4, 2) + b"\x80\x80\x80\x80\x80\x00",
    "a length over 2**31 - 1": _key(4, 2) + b"\x80\x80\x80\x80\x08",
    "data running past the end": _key(4, 2) + _varint(10) + b"short",
    "a truncated fixed64": _key(6, 1) + bytes(7),
    "a truncated fixed32": _key(6, 5) + bytes(3),
    "sha256 not UTF-8": _len(1, b"\xff"),
    "sha256 with a surrogate": _len(1, b"\xed\xa0\x80"),
    "an overlong UTF-8 sequence": _len(1, b"\xc0\x80"),
    "a bad earlier sha256 with a good later one": _len(1, b"\xff") + _len(1, b"ok"),
}


def test_well_formed_and_malformed_cases_decode_as_protobuf_decodes_them() -> None:
    for name, wire in WELL_FORMED.items():
        assert by_protobuf(wire)[0] != "undecodable", name
        assert by_hand(wire) == by_protobuf(wire), name
    for name, wire in MALFORMED.items():
        assert by_protobuf(wire) == ("undecodable",), name
        assert by_hand(wire) == ("undecodable",), name


def _random_field(rng: random.Random, depth: int = 0) -> bytes:
    number = rng.choice([1, 2, 3, 4, 1, 2, 3, 4, 5, 16, 2**29 - 1, 0])
    wire_type = rng.choice([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 7])
    key = _key(number, wire_type, rng.choice([0, 0, 0, 1, 4]))
    if wire_type == 0:
        value = rng.choice([0, 1, 300, MAX_STORED_INT, MAX_STORED_INT + 1, 2**64 - 1, rng.getrandbits(64)])
        return key + _varint(value, rng.choice([0, 0, 1, max(0, 9 - len(_varint(value)))]))
    if wire_type in (1, 5):
        return key + rng.randbytes(8 if wire_type == 1 else 4)
    if wire_type == 2:
        body = rng.choice([b"", SHA.encode(), "é".encode(), b"\xff\xfe", b"\x00ab", rng.randbytes(rng.randrange(40))])
        return key + _varint(len(body), rng.choice([0, 0, 0, 1, 4])) + body
    if wire_type == 3:
        inner = b"".join(_random_field(rng, depth + 1) for _ in range(rng.randrange(3))) if depth < 3 else b""
        return key + inner + (_key(number, 4) if rng.random() < 0.9 else rng.choice([b"\x0c", b"\x2c", b""]))
    return key


def _mutated(rng: random.Random, wire: bytes) -> bytes:
    if not wire:
        return wire
    at = rng.randrange(len(wire))
    return rng.choice([wire[:at], wire[:at] + bytes([rng.randrange(256)]) + wire[at + 1:],
                       wire[:at] + rng.randbytes(rng.randrange(1, 4)) + wire[at:], wire[:at] + wire[at + 1:]])


def test_random_and_mutated_messages_decode_as_protobuf_decodes_them() -> None:
    rng = random.Random(20261203)
    outcomes: set[object] = set()
    for _ in range(20_000):
        wire = b"".join(_random_field(rng) for _ in range(rng.randrange(7)))
        if rng.random() < 0.5:
            wire = _mutated(rng, wire)
        expected = by_protobuf(wire)
        assert by_hand(wire) == expected, wire.hex()
        outcomes.add(expected[0])
    for _ in range(5_000):
        wire = rng.randbytes(rng.randrange(12))
        assert by_hand(wire) == by_protobuf(wire), wire.hex()
    assert outcomes == {"ok", "undecodable", "refused"}


# -- through a hub ------------------------------------------------------------------------------------

def _raw_upload(api: InProcessHub, messages: list[bytes], method: str = "/spimeforge.v1.Designs/UploadBlob",
                user: str = "alice") -> Callable[[], object]:
    assert api.channel is not None
    stub = api.channel.stream_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return lambda: stub(iter(messages), metadata=api.md(user), timeout=60)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        header = common_pb2.BlobChunk(sha256=sha(data), total_size=len(data)) if offset == 0 else common_pb2.BlobChunk()
        header.offset = offset
        yield header.SerializeToString() + _len(4, data[offset:offset + size])


def test_a_malformed_chunk_after_good_ones_ends_the_upload_and_stores_nothing(any_api: InProcessHub) -> None:
    api = any_api
    data = bytes(range(256)) * 1024
    good = list(_chunks(data, 64 << 10))
    for bad in (good[2][:-1], good[2] + b"\x0e", good[2] + _key(5, 3), _len(1, b"\xff") + good[2]):
        refused(api, _raw_upload(api, [*good[:2], bad, *good[3:]]), BAD, "REQUEST_UNDECODABLE", "UploadBlob")
    assert api.temp_files() == []
    missing = api.designs.MissingBlobs(designs_pb2.MissingBlobsRequest(sha256=[sha(data)]), metadata=api.md("alice"))
    assert list(missing.sha256) == [sha(data)]


def test_chunks_with_fields_reordered_unknown_and_repeated_store_the_blob(any_api: InProcessHub) -> None:
    api = any_api
    data = b"tiled sphere " * 5000
    half = len(data) // 2
    first = (_len(4, b"replaced by the next data field") + _len(4, data[:half]) + _key(9, 0) + _varint(1)
             + _key(3, 0) + _varint(0) + _key(2, 0) + _varint(len(data)) + _len(1, sha(data).encode()))
    second = _key(8, 3) + _len(1, b"in a group") + _key(8, 4) + _len(4, data[half:]) + _key(3, 0) + _varint(half)
    raw = _raw_upload(api, [first, second])()
    assert isinstance(raw, bytes)
    answer = designs_pb2.UploadBlobResponse.FromString(raw)
    assert (answer.sha256, answer.size, answer.already_present) == (sha(data), len(data), False)
    assert (api.data_dir / "blobs" / sha(data)[:2] / sha(data)[2:]).read_bytes() == data


def test_a_nul_or_a_number_too_large_is_refused_by_name(any_api: InProcessHub) -> None:
    api = any_api
    api.add_user("lab", "node")
    cases = [(_len(1, b"ab\x00") + _len(4, DATA), "NUL_CHARACTER", "sha256"),
             (_len(1, SHA.encode()) + _key(2, 0) + _varint(2**63) + _len(4, DATA), "NUMBER_TOO_LARGE", "total_size"),
             (_len(1, SHA.encode()) + _key(2, 0) + _varint(5) + _key(3, 0) + _varint(2**64 - 1), "NUMBER_TOO_LARGE",
              "offset")]
    for method, user in (("/spimeforge.v1.Designs/UploadBlob", "alice"), ("/spimeforge.v1.Nodes/PutArtifact", "lab")):
        for wire, reason, field in cases:
            refusal = refused(api, _raw_upload(api, [wire], method, user), BAD, reason, field)
            assert refusal.info.metadata["field"] == field
