"""Every input gets a status, never INTERNAL (issue 10 §3, §5), on SQLite and PostgreSQL.

Hostile requests of each class: malformed SPDX expressions, deep TOML, NUL in
any text field, undecodable protobuf, paths that do not check out everywhere.
Each asserts the status code, the machine-readable reason (and the field for
INVALID_ARGUMENT), and that the stored data is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from spimeforge.v1 import common_pb2, designs_pb2

from hub.api.interceptors import status_of
from hub.errors import HubError
from hub.manifest import MAX_TOML_DEPTH
from hub.paths import MAX_DEPTH
from tests.hub.harness import InProcessHub, manifest_toml, sha
from tests.hub.refusal import details_of, refused

STL = b"solid h\nendsolid h\n"
BAD = grpc.StatusCode.INVALID_ARGUMENT


def _created(api: InProcessHub) -> str:
    return api.push("alice", "cube", {"cube.stl": STL}, create=True).revision_id


def _push_manifest(api: InProcessHub, manifest: str) -> Callable[[], object]:
    api.upload("alice", STL)
    return lambda: api.push("alice", "cube", {"cube.stl": STL}, manifest=manifest, create=True, upload=False)


# (tests/hub/test_licence_law_pure.py holds more; these go through every door)
MALFORMED_SPDX = ["MIT OR", "()", "LicenseRef-x OR", "OR MIT", "MIT\u202eGPL-3.0-only", "(" * 300 + "MIT" + ")" * 300]


def test_malformed_spdx_is_invalid_argument_at_every_door(any_api: InProcessHub) -> None:
    api = any_api
    _created(api)
    reasons = ("LICENSE_MALFORMED", "LICENSE_UNKNOWN", "LICENSE_TOO_LONG", "FIELD_TOO_LARGE", "CONTROL_CHARACTER")
    for text in MALFORMED_SPDX:
        refused(api, _push_manifest(api, manifest_toml("cube", license=text)), BAD, reasons)
        fork = designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design="cube")], name="cube-fork", license=text)
        refused(api, lambda fork=fork: api.designs.Fork(fork, metadata=api.md("bob")), BAD, reasons)
        search = designs_pb2.SearchRequest(license=text)
        refused(api, lambda search=search: api.designs.Search(search, metadata=api.md("carol")), BAD, reasons)
    refused(api, _push_manifest(api, manifest_toml("cube", license="MIT OR")), BAD, "LICENSE_MALFORMED", "MIT OR")


DEEP_TOML = ["x = " + "[" * 2000 + "]" * 2000, "x = " + "{a = " * 2000 + "1" + "}" * 2000,
             "x = " + "[" * (MAX_TOML_DEPTH + 1) + "]" * (MAX_TOML_DEPTH + 1)]


def test_deep_toml_is_refused_before_parsing(any_api: InProcessHub) -> None:
    api = any_api
    for nested in DEEP_TOML:
        manifest = manifest_toml("cube").replace("[[parts]]", nested + "\n[[parts]]")
        refusal = refused(api, _push_manifest(api, manifest), BAD, "MANIFEST_TOO_DEEP", str(MAX_TOML_DEPTH))
        assert refusal.bad_request is not None and refusal.bad_request.field_violations[0].field == "manifest_toml"


def test_nul_in_any_text_field_is_the_same_refusal_on_both_databases(any_api: InProcessHub) -> None:
    api = any_api
    head = _created(api)
    proposal = api.push("bob", "cube", {"cube.stl": STL + b"bob"}, parents=(head,))
    api.upload("alice", STL + b"2")
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: api.push("alice", "cube", {"cube.stl": STL + b"2"}, parents=(head,), message="a\x00b",
                          upload=False), "message"),
        (lambda: api.designs.GetDesign(designs_pb2.GetDesignRequest(design="cu\x00be"), metadata=api.md("carol")),
         "design"),
        (lambda: api.designs.GetRevision(designs_pb2.GetRevisionRequest(design="cube", revision_id=head[:8] + "\x00"),
                                         metadata=api.md("carol")), "revision_id"),
        (lambda: api.designs.Fork(designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design="cube")],
                                                          name="cube-2", title="T\x00"), metadata=api.md("bob")),
         "title"),
        (lambda: api.designs.DeclineProposal(designs_pb2.DeclineProposalRequest(
            design="cube", proposal_id=proposal.proposal_id, reason="no\x00"), metadata=api.md("alice")), "reason"),
        (lambda: api.designs.AcceptProposal(designs_pb2.AcceptProposalRequest(
            design="cube", proposal_id=proposal.proposal_id + "\x00"), metadata=api.md("alice")), "proposal_id"),
        (lambda: api.designs.Search(designs_pb2.SearchRequest(text="cube\x00", tags=["a", "b\x00"]),
                                    metadata=api.md("carol")), "text"),
        (lambda: api.designs.AddMaintainer(designs_pb2.AddMaintainerRequest(design="cube", account="bo\x00b"),
                                           metadata=api.md("alice")), "account"),
    ]
    for call, field in calls:
        refusal = refused(api, call, BAD, "NUL_CHARACTER", field)
        assert field in refusal.info.metadata["field"]


def test_nul_in_a_nested_repeated_field_names_it(any_api: InProcessHub) -> None:
    api = any_api
    api.upload("alice", STL)
    entries = [common_pb2.FileEntry(path="cube.stl", sha256=sha(STL), size=len(STL)),
               common_pb2.FileEntry(path="x\x00.stl", sha256=sha(STL), size=len(STL))]
    refusal = refused(api, lambda: api.push("alice", "cube", {"cube.stl": STL}, entries=entries, create=True,
                                            upload=False), BAD, "NUL_CHARACTER")
    assert refusal.info.metadata["field"] == "files[1].path"


METHODS = [("Push", "unary_unary"), ("GetDesign", "unary_unary"), ("UploadBlob", "stream_unary"),
           ("DownloadBlob", "unary_stream")]
# an invalid wire type, a string that is not UTF-8, a length running past the end
UNDECODABLE = [b"\xff\xff\xff", b"\x0a\x05\xff\xfe\xfd\xfc\xfb", b"\x0a\x80"]


def _raw_call(api: InProcessHub, method: str, kind: str, payload: bytes) -> Callable[[], object]:
    assert api.channel is not None
    identity = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
    stub = getattr(api.channel, kind)(f"/spimeforge.v1.Designs/{method}", **identity)
    if kind == "stream_unary":
        return lambda: stub(iter([payload]), metadata=api.md("alice"))
    if kind == "unary_stream":
        return lambda: list(stub(payload, metadata=api.md("alice")))
    return lambda: stub(payload, metadata=api.md("alice"))


def test_undecodable_protobuf_is_invalid_argument(any_api: InProcessHub) -> None:
    api = any_api
    for method, kind in METHODS:
        for payload in UNDECODABLE:
            refused(api, _raw_call(api, method, kind, payload), BAD, "REQUEST_UNDECODABLE", method)
    # the hub still serves the same caller afterwards
    assert api.designs.Search(designs_pb2.SearchRequest(), metadata=api.md("alice")).designs == []


HOSTILE_PATHS = [
    (["CON.stl"], "PATH_RESERVED_NAME"),
    (["parts/aux.3mf"], "PATH_RESERVED_NAME"),
    (["lpt1"], "PATH_RESERVED_NAME"),
    (["trailing."], "PATH_TRAILING_DOT_OR_SPACE"),
    (["dir /x.stl"], "PATH_TRAILING_DOT_OR_SPACE"),
    (["evil\u202egnp.stl"], "PATH_CONTROL_CHARACTER"),
    (["tab\there.stl"], "PATH_CONTROL_CHARACTER"),
    (["what?.stl"], "PATH_WINDOWS_FORBIDDEN_CHARACTER"),
    (["Part.stl", "part.STL"], "PATH_CASE_COLLISION"),
    (["caf\u00e9.stl", "cafe\u0301.stl"], "PATH_CASE_COLLISION"),
    (["docs", "docs/readme.md"], "PATH_FILE_AND_FOLDER"),
    (["é" * 128], "PATH_COMPONENT_TOO_LONG"),
    (["/".join(["d"] * MAX_DEPTH + ["x"])], "PATH_TOO_DEEP"),
    (["Spime.TOML"], "PATH_RESERVED_NAME"),
    ([".spime/base"], "PATH_RESERVED_NAME"),
]


def test_paths_that_do_not_check_out_everywhere_are_refused(any_api: InProcessHub) -> None:
    api = any_api
    api.upload("alice", STL)
    for paths, rule in HOSTILE_PATHS:
        entries = [common_pb2.FileEntry(path="cube.stl", sha256=sha(STL), size=len(STL))]
        entries += [common_pb2.FileEntry(path=p, sha256=sha(STL), size=len(STL)) for p in paths]
        refusal = refused(api, lambda entries=entries: api.push("alice", "cube", {"cube.stl": STL}, entries=entries,
                                                                create=True, upload=False), BAD, rule, repr(paths[-1])[:30])
        assert refusal.info.metadata["field"] == f"files[{len(paths)}].path"
        assert refusal.bad_request is not None and refusal.bad_request.field_violations[0].field.endswith(".path")


def test_a_manifest_path_that_does_not_check_out_is_refused(any_api: InProcessHub) -> None:
    api = any_api
    manifest = manifest_toml("cube", files=("cube.stl",)) + 'images = ["NUL.png"]\n'
    manifest = manifest.replace('tags = ["test"]\n', 'tags = ["test"]\nimages = ["NUL.png"]\n').rsplit("images", 1)[0]
    refused(api, _push_manifest(api, manifest), BAD, "PATH_RESERVED_NAME", "NUL.png")


def test_details_carry_retry_info_where_waiting_helps(any_api: InProcessHub) -> None:
    api = any_api
    first = _created(api)
    api.push("alice", "cube", {"cube.stl": STL * 2}, parents=(first,))
    api.upload("alice", STL * 3)
    with pytest.raises(grpc.RpcError) as info:
        api.push("alice", "cube", {"cube.stl": STL * 3}, parents=(first,), upload=False)
    refusal = details_of(info.value)
    assert refusal.code == grpc.StatusCode.ABORTED and refusal.info.reason == "STALE_HEAD"
    assert refusal.retry is not None and refusal.retry.retry_delay.seconds >= 1
    with pytest.raises(grpc.RpcError) as info:
        api.designs.GetDesign(designs_pb2.GetDesignRequest(design="nothing"), metadata=api.md("carol"))
    missing = details_of(info.value)
    assert missing.code == grpc.StatusCode.NOT_FOUND and missing.info.reason == "NOT_FOUND" and missing.retry is None


def _subclasses(cls: type[HubError]) -> list[type[HubError]]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_every_hub_error_has_a_status_and_a_reason() -> None:
    import hub.errors

    for cls in _subclasses(hub.errors.HubError)[1:]:
        error = cls("x")
        assert status_of(error) not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), cls
        assert error.reason != "HUB_ERROR" and error.reason.isupper(), cls
