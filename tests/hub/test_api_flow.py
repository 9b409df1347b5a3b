"""Push → proposal → accept/decline → fork/remix, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from spimeforge.v1 import designs_pb2

from hub.manifest import parse_manifest
from tests.hub.harness import InProcessHub, manifest_toml

STL = b"solid a\nendsolid a\n"


def _design(api: InProcessHub, user: str, slug: str, license: str, content: bytes = STL) -> str:
    manifest = manifest_toml(slug, license=license, tags=("fixture", slug.split("-")[0]), files=("part.stl",))
    return api.push(user, slug, {"part.stl": content + slug.encode()}, manifest=manifest, create=True).revision_id


def _get(api: InProcessHub, slug: str) -> designs_pb2.Design:
    return api.designs.GetDesign(designs_pb2.GetDesignRequest(design=slug), metadata=api.md("carol"))


def _fork(api: InProcessHub, user: str, parents: list[tuple[str, str]], name: str, license: str = "") -> designs_pb2.ForkResponse:
    request = designs_pb2.ForkRequest(
        parents=[designs_pb2.ForkParent(design=d, revision_id=r) for d, r in parents], name=name, license=license)
    return api.designs.Fork(request, metadata=api.md(user))


def _refused(api: InProcessHub, call, code: grpc.StatusCode, *words: str) -> str:  # type: ignore[no-untyped-def]
    before = api.snapshot()
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    for word in words:
        assert word in info.value.details(), info.value.details()
    assert api.snapshot() == before
    return info.value.details()


def test_non_maintainer_push_becomes_proposal_and_accept_moves_head(any_api: InProcessHub) -> None:
    api = any_api
    base = _design(api, "alice", "bracket", "CC-BY-SA-4.0")
    proposal = api.push("bob", "bracket", {"part.stl": STL + b"bob"}, manifest=manifest_toml("bracket", license="CC-BY-SA-4.0", files=("part.stl",)), parents=(base,))
    assert proposal.is_proposal and proposal.proposal_id
    assert _get(api, "bracket").head_revision_id == base
    listed = api.designs.ListProposals(designs_pb2.ListProposalsRequest(design="bracket"), metadata=api.md("alice"))
    assert [p.id for p in listed.proposals] == [proposal.proposal_id] and listed.proposals[0].author == "bob"
    _refused(api, lambda: api.designs.AcceptProposal(
        designs_pb2.AcceptProposalRequest(design="bracket", proposal_id=proposal.proposal_id), metadata=api.md("bob")),
        grpc.StatusCode.PERMISSION_DENIED, "maintainers")
    accepted = api.designs.AcceptProposal(
        designs_pb2.AcceptProposalRequest(design="bracket", proposal_id=proposal.proposal_id), metadata=api.md("alice"))
    assert accepted.design.head_revision_id == proposal.revision_id
    assert accepted.proposal.state == designs_pb2.PROPOSAL_STATE_ACCEPTED and accepted.proposal.decided_by == "alice"


def test_decline_and_stale_proposal(any_api: InProcessHub) -> None:
    api = any_api
    base = _design(api, "alice", "hook", "MIT")
    first = api.push("bob", "hook", {"part.stl": STL + b"1"}, manifest=manifest_toml("hook", license="MIT", files=("part.stl",)), parents=(base,))
    second = api.push("bob", "hook", {"part.stl": STL + b"2"}, manifest=manifest_toml("hook", license="MIT", files=("part.stl",)), parents=(base,))
    declined = api.designs.DeclineProposal(designs_pb2.DeclineProposalRequest(
        design="hook", proposal_id=first.proposal_id, reason="too thin"), metadata=api.md("alice"))
    assert declined.state == designs_pb2.PROPOSAL_STATE_DECLINED and declined.reason == "too thin"
    api.push("alice", "hook", {"part.stl": STL + b"alice"}, manifest=manifest_toml("hook", license="MIT", files=("part.stl",)), parents=(base,))
    _refused(api, lambda: api.designs.AcceptProposal(
        designs_pb2.AcceptProposalRequest(design="hook", proposal_id=second.proposal_id), metadata=api.md("alice")),
        grpc.StatusCode.FAILED_PRECONDITION, "moved")


def test_maintainers_add_others(any_api: InProcessHub) -> None:
    api = any_api
    base = _design(api, "alice", "clip", "CC0-1.0")
    _refused(api, lambda: api.designs.AddMaintainer(designs_pb2.AddMaintainerRequest(design="clip", account="bob"),
                                                     metadata=api.md("bob")), grpc.StatusCode.PERMISSION_DENIED)
    design = api.designs.AddMaintainer(designs_pb2.AddMaintainerRequest(design="clip", account="bob"), metadata=api.md("alice"))
    assert list(design.maintainers) == ["alice", "bob"]
    pushed = api.push("bob", "clip", {"part.stl": STL + b"b"}, manifest=manifest_toml("clip", license="CC0-1.0", files=("part.stl",)), parents=(base,))
    assert not pushed.is_proposal and _get(api, "clip").head_revision_id == pushed.revision_id


def test_fork_records_parents_license_and_attribution(any_api: InProcessHub) -> None:
    api = any_api
    parent = _design(api, "alice", "gear", "CC-BY-4.0")
    fork = _fork(api, "bob", [("gear", "")], "gear-remix", "CERN-OHL-S-2.0")
    assert list(fork.revision.parent_ids) == [parent] and fork.revision.kind == designs_pb2.REVISION_KIND_FORK
    assert list(fork.design.forked_from) == [parent] and list(fork.design.maintainers) == ["bob"]
    manifest = parse_manifest(fork.revision.manifest_toml)
    assert manifest.license == "CERN-OHL-S-2.0" and manifest.derivative_of == (f"gear@{parent}",)
    [attribution] = fork.design.attributions
    assert attribution.design == "gear" and attribution.license == "CC-BY-4.0" and "credit" in attribution.notice
    # obligations travel on: a fork of the fork inherits gear's attribution too
    grand = _fork(api, "alice", [("gear-remix", "")], "gear-remix-2")
    assert {a.design for a in grand.design.attributions} == {"gear", "gear-remix"}


def test_remix_license_rules(any_api: InProcessHub) -> None:
    api = any_api
    _design(api, "alice", "sa-part", "CC-BY-SA-4.0")
    _design(api, "alice", "gpl-part", "GPL-3.0-or-later")
    _design(api, "alice", "nc-part", "CC-BY-NC-4.0")
    _design(api, "alice", "nd-part", "CC-BY-ND-4.0")
    _refused(api, lambda: _fork(api, "bob", [("nd-part", "")], "nd-fork"),
             grpc.StatusCode.FAILED_PRECONDITION, "no derivatives", "nd-part")
    _refused(api, lambda: _fork(api, "bob", [("sa-part", ""), ("nc-part", "")], "sa-nc", "CC-BY-NC-SA-4.0"),
             grpc.StatusCode.FAILED_PRECONDITION, "intersection", "sa-part", "nc-part")
    _refused(api, lambda: _fork(api, "bob", [("sa-part", ""), ("gpl-part", "")], "sa-gpl", "CC-BY-SA-4.0"),
             grpc.StatusCode.FAILED_PRECONDITION, "derivative licence", "gpl-part")
    remix = _fork(api, "bob", [("sa-part", ""), ("gpl-part", "")], "sa-gpl", "GPL-3.0-only")
    assert len(remix.revision.parent_ids) == 2 and remix.design.license == "GPL-3.0-only"
    assert {f.path for f in remix.revision.files} == {"part.stl", "gpl-part/part.stl"}
    _refused(api, lambda: _fork(api, "bob", [("sa-part", ""), ("gpl-part", "")], "no-license"),
             grpc.StatusCode.INVALID_ARGUMENT, "--license")


def test_fork_errors(any_api: InProcessHub) -> None:
    api = any_api
    _design(api, "alice", "base", "MIT")
    _refused(api, lambda: _fork(api, "bob", [("nothing", "")], "x-fork"), grpc.StatusCode.NOT_FOUND, "nothing")
    _refused(api, lambda: _fork(api, "bob", [("base", "")], "base"), grpc.StatusCode.ALREADY_EXISTS)
    _refused(api, lambda: _fork(api, "carol", [("base", "")], "carol-fork"), grpc.StatusCode.PERMISSION_DENIED)
    _refused(api, lambda: _fork(api, "bob", [("base", "")], "bad-lic", "NotALicense-1"), grpc.StatusCode.INVALID_ARGUMENT, "NotALicense-1")


def test_search_filters_and_pages(any_api: InProcessHub) -> None:
    api = any_api
    for i in range(5):
        _design(api, "alice", f"cube-{i}", "CC-BY-4.0" if i % 2 else "MIT")
    page = api.designs.Search(designs_pb2.SearchRequest(text="cube", page={"page_size": 2}), metadata=api.md("carol"))
    assert [d.slug for d in page.designs] == ["cube-0", "cube-1"] and page.next_page_token
    rest = api.designs.Search(designs_pb2.SearchRequest(text="cube", page={"page_size": 10, "page_token": page.next_page_token}), metadata=api.md("carol"))
    assert [d.slug for d in rest.designs] == ["cube-2", "cube-3", "cube-4"] and not rest.next_page_token
    by_license = api.designs.Search(designs_pb2.SearchRequest(license="MIT"), metadata=api.md("carol"))
    assert [d.slug for d in by_license.designs] == ["cube-0", "cube-2", "cube-4"]
    by_tag = api.designs.Search(designs_pb2.SearchRequest(tags=["fixture", "cube"], text="3"), metadata=api.md("carol"))
    assert [d.slug for d in by_tag.designs] == ["cube-3"]


def test_search_by_licence_matches_whole_ids(any_api: InProcessHub) -> None:
    api = any_api
    _design(api, "alice", "zero", "MIT-0")
    _design(api, "alice", "plain", "MIT")
    _design(api, "alice", "dual", "CC-BY-SA-4.0 OR MIT")
    found = api.designs.Search(designs_pb2.SearchRequest(license="mit"), metadata=api.md("carol"))
    assert [d.slug for d in found.designs] == ["dual", "plain"]
    _refused(api, lambda: api.designs.Search(designs_pb2.SearchRequest(license="Nope-1"), metadata=api.md("carol")),
             grpc.StatusCode.INVALID_ARGUMENT, "Nope-1")
