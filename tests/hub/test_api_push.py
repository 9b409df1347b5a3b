"""Push through the real API: the happy path and every bad-input case of issue 2.

Each refusal asserts the gRPC status AND that the stored data is unchanged.
"""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest
from spimeforge.v1 import common_pb2, designs_pb2, designs_pb2_grpc

from hub import provenance
from hub.manifest import parse_manifest
from tests.hub.fake_agent import wait_for
from tests.hub.harness import InProcessHub, manifest_toml, now_z, register_key, sha

CUBE = b"solid cube\nendsolid cube\n" * 10
README = b"# readme\n"


def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def _refused(api: InProcessHub, call, code: grpc.StatusCode, words: str = "") -> str:  # type: ignore[no-untyped-def]
    before = api.snapshot()
    got, details = _code(call)
    assert got == code, details
    assert words.lower() in details.lower(), details
    assert api.snapshot() == before
    assert api.temp_files() == []
    return details


def _created(api: InProcessHub, user: str = "alice", design: str = "cube") -> str:
    response = api.push(user, design, {"cube.stl": CUBE, "README.md": README}, create=True)
    return response.revision_id


def test_push_creates_design_and_revision_id_matches_provenance(any_api: InProcessHub) -> None:
    api = any_api
    created_at = now_z()
    response = api.push("alice", "cube", {"cube.stl": CUBE}, create=True, created_at=created_at, message="first")
    manifest = parse_manifest(manifest_toml("cube"))
    expected = provenance.revision_id(
        [], manifest.to_dict(), [provenance.FileEntry("cube.stl", sha(CUBE), len(CUBE))], "alice", created_at, "first"
    )
    assert response.revision_id == expected and not response.is_proposal and not response.unchanged
    design = api.designs.GetDesign(designs_pb2.GetDesignRequest(design="cube"), metadata=api.md("carol"))
    assert design.head_revision_id == expected and list(design.maintainers) == ["alice"]
    assert design.license == "CC-BY-4.0" and design.revision_count == 1


def test_repush_same_content_is_unchanged_and_sends_no_blobs(any_api: InProcessHub) -> None:
    api = any_api
    head = _created(api)
    files = {"cube.stl": CUBE, "README.md": README}
    missing = api.designs.MissingBlobs(
        designs_pb2.MissingBlobsRequest(sha256=[sha(b) for b in files.values()]), metadata=api.md("alice"))
    assert list(missing.sha256) == []
    before = api.snapshot()
    again = api.push("alice", "cube", files, parents=(head,), upload=False, message="again")
    assert again.unchanged and again.revision_id == head
    assert api.snapshot() == before


def test_push_moves_head_and_log_follows_first_parents(any_api: InProcessHub) -> None:
    api = any_api
    first = _created(api)
    second = api.push("alice", "cube", {"cube.stl": CUBE * 2, "README.md": README}, parents=(first,)).revision_id
    log = api.designs.Log(designs_pb2.LogRequest(design="cube"), metadata=api.md("carol"))
    assert [r.id for r in log.revisions] == [second, first]
    rev = api.designs.GetRevision(designs_pb2.GetRevisionRequest(design="cube", revision_id=second[:10]), metadata=api.md("olga"))
    assert rev.id == second and list(rev.parent_ids) == [first]


def test_upload_dedupes_and_download_round_trips(any_api: InProcessHub) -> None:
    api = any_api
    data = bytes(range(256)) * 5000
    first = api.upload("alice", data, chunk=100_000)
    second = api.upload("alice", data)
    assert (first.size, first.already_present, second.already_present) == (len(data), False, True)
    chunks = list(api.designs.DownloadBlob(designs_pb2.DownloadBlobRequest(sha256=sha(data)), metadata=api.md("carol")))
    assert b"".join(c.data for c in chunks) == data and chunks[0].total_size == len(data)
    tail = api.designs.DownloadBlob(designs_pb2.DownloadBlobRequest(sha256=sha(data), offset=1000), metadata=api.md("carol"))
    assert b"".join(c.data for c in tail) == data[1000:]


# -- bad input: manifest and licence --------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "words"),
    [
        ("this is = = not toml", "not valid TOML"),
        (manifest_toml("cube").replace('licensor = "Test Licensor"\n', ""), "licensor"),
        (manifest_toml("cube").replace('version = "1.0.0"', "version = 3"), "version"),
        (manifest_toml("cube") + 'colour = "red"\n', "unknown field"),
        (manifest_toml("other"), "does not match"),
        (manifest_toml("cube", files=("missing.stl",)), "missing.stl"),
    ],
)
def test_malformed_or_missing_manifest_fields(any_api: InProcessHub, manifest: str, words: str) -> None:
    api = any_api
    _created(api)
    head = api.designs.GetDesign(designs_pb2.GetDesignRequest(design="cube"), metadata=api.md("alice")).head_revision_id
    api.upload("alice", CUBE * 3)
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE * 3}, manifest=manifest, parents=(head,), upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, words)


@pytest.mark.parametrize(("license", "words"), [("Bogus-License-9", "Bogus-License-9"), ("MIT AND (", "malformed")])
def test_unknown_or_malformed_spdx(any_api: InProcessHub, license: str, words: str) -> None:
    api = any_api
    manifest = manifest_toml("cube", license=license)
    api.upload("alice", CUBE)
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE}, manifest=manifest, create=True, upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, words)


# -- bad input: file names -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "words"),
    [("../etc/passwd", ".."), ("parts/../../x.stl", ".."), ("/abs/cube.stl", "absolute"),
     ("nul\x00.stl", "NUL"), ("dir\\cube.stl", "backslash")],
)
def test_unsafe_file_names(any_api: InProcessHub, path: str, words: str) -> None:
    api = any_api
    api.upload("alice", CUBE)
    entries = [common_pb2.FileEntry(path="cube.stl", sha256=sha(CUBE), size=len(CUBE)),
               common_pb2.FileEntry(path=path, sha256=sha(CUBE), size=len(CUBE))]
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE}, entries=entries, create=True, upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, words)


def test_duplicate_file_names(any_api: InProcessHub) -> None:
    api = any_api
    api.upload("alice", CUBE)
    entry = common_pb2.FileEntry(path="cube.stl", sha256=sha(CUBE), size=len(CUBE))
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE}, entries=[entry, entry], create=True, upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, "twice")


# -- bad input: blobs -------------------------------------------------------------------


def test_blob_whose_bytes_do_not_match_its_hash(any_api: InProcessHub) -> None:
    api = any_api
    _refused(api, lambda: api.upload("alice", CUBE, declared=sha(b"something else")),
             grpc.StatusCode.INVALID_ARGUMENT, "hash")
    assert api.designs.MissingBlobs(designs_pb2.MissingBlobsRequest(sha256=[sha(CUBE)]), metadata=api.md("alice")).sha256


def test_blob_shorter_than_declared(any_api: InProcessHub) -> None:
    api = any_api
    _refused(api, lambda: api.upload("alice", CUBE, declared_size=len(CUBE) + 5), grpc.StatusCode.INVALID_ARGUMENT, "declared")


def test_upload_over_the_limit_is_resource_exhausted_and_leaves_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.hub.harness import start_in_process

    api = start_in_process(tmp_path / "small", max_blob_bytes=100_000)
    try:
        big = b"x" * 300_000
        # declared honestly: refused at the first chunk
        _refused(api, lambda: api.upload("alice", big), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit")
        # declared small but streaming more: refused while streaming, temp file removed
        _refused(api, lambda: api.upload("alice", big, declared_size=50_000), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit")
        assert not any((api.data_dir / "blobs").glob("??/*"))
    finally:
        api.stop()


def test_push_with_missing_blobs_lists_them(any_api: InProcessHub) -> None:
    api = any_api
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE}, create=True, upload=False),
             grpc.StatusCode.FAILED_PRECONDITION, "cube.stl")


def test_declared_size_differs_from_blob(any_api: InProcessHub) -> None:
    api = any_api
    api.upload("alice", CUBE)
    entries = [common_pb2.FileEntry(path="cube.stl", sha256=sha(CUBE), size=len(CUBE) + 1)]
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE}, entries=entries, create=True, upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, "bytes")


# -- bad input: history, time, signatures, designs ---------------------------------------


def test_stale_parent_is_aborted_with_pull_first(any_api: InProcessHub) -> None:
    api = any_api
    first = _created(api)
    second = api.push("alice", "cube", {"cube.stl": CUBE * 2}, parents=(first,)).revision_id
    api.upload("alice", CUBE * 3)
    details = _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE * 3}, parents=(first,), upload=False),
                       grpc.StatusCode.ABORTED, "pull first")
    assert second in details


@pytest.mark.parametrize("parent", ["", "UPPER", "not-hex", "short"])
def test_a_parent_id_that_is_no_revision_id_is_invalid_argument_not_pull_first(any_api: InProcessHub,
                                                                               parent: str) -> None:
    api = any_api
    head = _created(api)
    bad = {"": "", "UPPER": head.upper(), "not-hex": "z" * 64, "short": head[:12]}[parent]
    api.upload("alice", CUBE * 3)
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE * 3}, parents=(head, bad)[-1:], upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, "parent_ids[0]")
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE * 3}, parents=(head, bad), upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, "parent_ids[1]")


def test_created_at_far_from_now(any_api: InProcessHub) -> None:
    api = any_api
    api.upload("alice", CUBE)
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE}, create=True, created_at=now_z(86400), upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, "clock")
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE}, create=True, created_at="yesterday", upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, "RFC 3339")
    # another script's digits: strptime reads a fullwidth "２０２６" as 2026, but the text, kept in the
    # revision and compared as text with key registrations, would sort after every ASCII time
    fullwidth = now_z().translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    _refused(api, lambda: api.push("alice", "cube", {"cube.stl": CUBE}, create=True, created_at=fullwidth, upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, "RFC 3339")


def test_signed_push_verifies_and_forged_signature_is_refused(any_api: InProcessHub) -> None:
    api = any_api
    key = provenance.generate_private_key()
    public = provenance.public_key_of(key)
    register_key(api, "alice", key)
    created_at = now_z()  # after the key's registration: a revision counts a key valid when it was made
    files = {"cube.stl": CUBE}
    manifest = parse_manifest(manifest_toml("cube")).to_dict()
    rid = provenance.revision_id([], manifest, [provenance.FileEntry("cube.stl", sha(CUBE), len(CUBE))], "alice", created_at, "signed")
    forged = provenance.sign(provenance.generate_private_key(), rid)
    api.upload("alice", CUBE)
    _refused(api, lambda: api.push("alice", "cube", files, create=True, created_at=created_at, message="signed",
                                   signature=forged, public_key=public, upload=False), grpc.StatusCode.INVALID_ARGUMENT, "signature")
    good = api.push("alice", "cube", files, create=True, created_at=created_at, message="signed",
                    signature=provenance.sign(key, rid), public_key=public)
    assert good.revision_id == rid
    rev = api.designs.GetRevision(designs_pb2.GetRevisionRequest(design="cube"), metadata=api.md("carol"))
    assert rev.signature and rev.public_key == public


def test_push_to_a_missing_design_is_not_found(any_api: InProcessHub) -> None:
    api = any_api
    # before any blob is uploaded, and after: NOT_FOUND either way
    _refused(api, lambda: api.push("bob", "ghost", {"cube.stl": CUBE}, parents=("a" * 64,), upload=False),
             grpc.StatusCode.NOT_FOUND, "ghost")
    api.upload("bob", CUBE)
    _refused(api, lambda: api.push("bob", "ghost", {"cube.stl": CUBE}, parents=("a" * 64,), upload=False),
             grpc.StatusCode.NOT_FOUND, "ghost")


def test_create_an_existing_design_is_already_exists(any_api: InProcessHub) -> None:
    api = any_api
    _created(api)
    api.upload("bob", CUBE * 5)
    _refused(api, lambda: api.push("bob", "cube", {"cube.stl": CUBE * 5}, create=True, upload=False),
             grpc.StatusCode.ALREADY_EXISTS, "cube")


def test_bad_slug(any_api: InProcessHub) -> None:
    api = any_api
    api.upload("alice", CUBE)
    _refused(api, lambda: api.push("alice", "Bad Name", {"cube.stl": CUBE}, manifest=manifest_toml("cube"), create=True, upload=False),
             grpc.StatusCode.INVALID_ARGUMENT, "slug")


# -- authentication and roles -------------------------------------------------------------


def test_unauthenticated_and_unknown_token(any_api: InProcessHub) -> None:
    api = any_api
    request = api.push_request("cube", {"cube.stl": CUBE}, create=True)
    _refused(api, lambda: api.designs.Push(request), grpc.StatusCode.UNAUTHENTICATED, "token")
    _refused(api, lambda: api.designs.Push(request, metadata=(("authorization", "Bearer spf_nope"),)),
             grpc.StatusCode.UNAUTHENTICATED, "unknown")
    _refused(api, lambda: api.designs.Push(request, metadata=(("authorization", "Basic abc"),)),
             grpc.StatusCode.UNAUTHENTICATED, "bearer")


@pytest.mark.parametrize("user", ["carol", "olga"])
def test_wrong_role_cannot_push_or_upload(any_api: InProcessHub, user: str) -> None:
    api = any_api
    _refused(api, lambda: api.push(user, "cube", {"cube.stl": CUBE}, create=True, upload=False),
             grpc.StatusCode.PERMISSION_DENIED, "designer")
    _refused(api, lambda: api.upload(user, CUBE), grpc.StatusCode.PERMISSION_DENIED, "designer")


def test_chunks_out_of_order_and_empty_upload(any_api: InProcessHub) -> None:
    api = any_api
    def shuffled():  # type: ignore[no-untyped-def]
        yield common_pb2.BlobChunk(sha256=sha(CUBE), total_size=len(CUBE), offset=0, data=CUBE[:10])
        yield common_pb2.BlobChunk(offset=20, data=CUBE[20:])

    _refused(api, lambda: api.designs.UploadBlob(shuffled(), metadata=api.md("alice")), grpc.StatusCode.INVALID_ARGUMENT, "offset")
    _refused(api, lambda: api.designs.UploadBlob(iter([]), metadata=api.md("alice")), grpc.StatusCode.INVALID_ARGUMENT, "empty upload")


def test_download_of_a_missing_blob(any_api: InProcessHub) -> None:
    api = any_api
    request = designs_pb2.DownloadBlobRequest(sha256=sha(b"never uploaded"))
    _refused(api, lambda: list(api.designs.DownloadBlob(request, metadata=api.md("carol"))), grpc.StatusCode.NOT_FOUND, "not on this hub")
    bad = designs_pb2.DownloadBlobRequest(sha256="../../etc/passwd")
    _refused(api, lambda: list(api.designs.DownloadBlob(bad, metadata=api.md("carol"))), grpc.StatusCode.INVALID_ARGUMENT, "SHA-256")


def test_revoking_a_token_ends_a_download_waiting_for_its_client(any_api: InProcessHub) -> None:
    """The token of a download is revoked while the hub's next message waits for the client to read
    (flow control): once the client reads on, the download ends UNAUTHENTICATED. Cancelling the send
    instead would end the call without a status, the client waiting until its deadline."""
    data = os.urandom(8 << 20)  # 8 messages of 1 MiB
    any_api.upload("alice", data)
    # no window growth (BDP probing): the client's 64 KiB window holds back the hub's next message
    channel = grpc.insecure_channel(any_api.address, options=[("grpc.http2.bdp_probe", 0)])
    download = designs_pb2_grpc.DesignsStub(channel).DownloadBlob(
        designs_pb2.DownloadBlobRequest(sha256=sha(data)), metadata=any_api.md("carol"), timeout=30)
    received = len(next(download).data)
    live = any_api.server.interceptor.live_calls
    wait_for(lambda: live.waiting_on_clients() == 1)
    any_api.composed.store.accounts._thd_revoke_tokens("carol", now_z())  # as `spime-hub user revoke` does
    assert asyncio.run_coroutine_threadsafe(any_api.server.recheck_streams(), any_api.loop).result(timeout=30) == 1
    with pytest.raises(grpc.RpcError) as ended:
        for chunk in download:
            received += len(chunk.data)
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED, ended.value.details()
    assert "revoked" in (ended.value.details() or "") and received < len(data)
    wait_for(lambda: len(live) == 0)
    channel.close()
