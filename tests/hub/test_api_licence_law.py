"""Licence law at every door (issue 10 §1), on SQLite and PostgreSQL.

Create, ordinary push, multi-parent push, proposal, accept and fork all run the
same check against the whole lineage; only accepted revisions can be parents;
inherited attributions cannot be dropped; a remix never silently replaces a file.
Each refusal is FAILED_PRECONDITION naming the rule and the parent, carries its
reason in the details, and leaves the store unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from spimeforge.v1 import designs_pb2

from hub.domain import FileEntry, Revision, RevisionKind
from hub.manifest import parse_manifest
from tests.hub.harness import InProcessHub, manifest_toml, now_z, sha
from tests.hub.refusal import refused

STL = b"solid a\nendsolid a\n"
FP = grpc.StatusCode.FAILED_PRECONDITION


def _create(api: InProcessHub, user: str, slug: str, license: str, files: dict[str, bytes] | None = None) -> str:
    files = files or {"part.stl": STL + slug.encode()}
    manifest = manifest_toml(slug, license=license, files=tuple(files))
    return api.push(user, slug, files, manifest=manifest, create=True).revision_id


def _push(api: InProcessHub, user: str, slug: str, license: str, parents: tuple[str, ...], content: bytes,
          extra: str = "") -> Callable[[], designs_pb2.PushResponse]:
    """Upload the blob now; the returned call pushes (so a refused push changes nothing)."""
    manifest = manifest_toml(slug, license=license, files=("part.stl",), extra=extra)
    api.upload(user, STL + content)
    return lambda: api.push(user, slug, {"part.stl": STL + content}, manifest=manifest, parents=parents, upload=False)


def _fork(api: InProcessHub, user: str, parents: list[tuple[str, str]], name: str, license: str = "") -> designs_pb2.ForkResponse:
    request = designs_pb2.ForkRequest(
        parents=[designs_pb2.ForkParent(design=d, revision_id=r) for d, r in parents], name=name, license=license)
    return api.designs.Fork(request, metadata=api.md(user))


def _design(api: InProcessHub, slug: str) -> designs_pb2.Design:
    return api.designs.GetDesign(designs_pb2.GetDesignRequest(design=slug), metadata=api.md("carol"))


def _derivative_of(fork: designs_pb2.ForkResponse) -> str:
    entries = parse_manifest(fork.revision.manifest_toml).derivative_of
    return "derivative_of = [" + ", ".join(f'"{e}"' for e in entries) + "]\n"


def test_a_derivative_cannot_relicense_by_an_ordinary_push(any_api: InProcessHub) -> None:
    api = any_api
    _create(api, "alice", "shelf", "CC-BY-SA-4.0")
    fork = _fork(api, "bob", [("shelf", "")], "shelf-bob")
    keep = _derivative_of(fork)
    refused(api, _push(api, "bob", "shelf-bob", "MIT", (fork.revision.id,), b"mit", keep),
            FP, "LICENSE_DERIVATIVE_NOT_ALLOWED", "derivative licence", "shelf@")
    # a licence the upstream allows (BY-SA → GPLv3, one-way) is fine for the fork's maintainer
    moved = _push(api, "bob", "shelf-bob", "GPL-3.0-or-later", (fork.revision.id,), b"gpl", keep)()
    assert _design(api, "shelf-bob").license == "GPL-3.0-or-later" and not moved.is_proposal
    # and the whole lineage still binds: back from GPL to MIT is refused naming the original
    refused(api, _push(api, "bob", "shelf-bob", "MIT", (moved.revision_id,), b"mit2", keep),
            FP, "LICENSE_DERIVATIVE_NOT_ALLOWED", "shelf@")
    # the inherited derivative_of cannot be dropped from the manifest either
    refused(api, _push(api, "bob", "shelf-bob", "GPL-3.0-or-later", (moved.revision_id,), b"dropped"),
            FP, "LICENSE_ATTRIBUTION_DROPPED", "shelf@")


def test_only_maintainers_relicense_an_original_and_only_from_that_revision_on(any_api: InProcessHub) -> None:
    api = any_api
    first = _create(api, "alice", "hinge", "CC-BY-SA-4.0")
    refused(api, _push(api, "bob", "hinge", "MIT", (first,), b"bob"),
            FP, "LICENSE_CHANGE_NOT_MAINTAINER", "CC-BY-SA-4.0", "MIT")
    second = _push(api, "alice", "hinge", "MIT", (first,), b"alice")().revision_id
    assert _design(api, "hinge").license == "MIT"
    # the first revision stays CC-BY-SA: its forks are bound by it, the new head's are not
    refused(api, lambda: _fork(api, "bob", [("hinge", first)], "hinge-old", "MIT"),
            FP, "LICENSE_DERIVATIVE_NOT_ALLOWED", "hinge@")
    assert _fork(api, "bob", [("hinge", second)], "hinge-new", "MIT").design.license == "MIT"


def test_a_multi_parent_push_obeys_every_parent_and_keeps_their_attribution(any_api: InProcessHub) -> None:
    api = any_api
    nd = _create(api, "alice", "logo", "CC-BY-ND-4.0")
    by = _create(api, "alice", "knob", "CC-BY-4.0")
    head = _create(api, "bob", "panel", "MIT")
    refused(api, _push(api, "bob", "panel", "MIT", (head, nd), b"with-logo"),
            FP, "LICENSE_ND_NO_DERIVATIVES", "no derivatives", "logo@")
    merged = _push(api, "bob", "panel", "MIT", (head, by), b"with-knob")().revision_id
    assert {a.design for a in _design(api, "panel").attributions} == {"knob"}
    # a later single-parent push still carries the inherited attribution
    later = _push(api, "bob", "panel", "MIT", (merged,), b"later")().revision_id
    revision = api.designs.GetRevision(designs_pb2.GetRevisionRequest(design="panel", revision_id=later),
                                       metadata=api.md("carol"))
    assert [a.design for a in revision.attributions] == ["knob"]
    assert {a.design for a in _design(api, "panel").attributions} == {"knob"}
    # a new design naming a hub revision in derivative_of is bound by it too
    extra = f'derivative_of = ["logo@{nd}"]\n'
    manifest = manifest_toml("logo-copy", license="MIT", files=("part.stl",), extra=extra)
    api.upload("bob", STL + b"copy")
    refused(api, lambda: api.push("bob", "logo-copy", {"part.stl": STL + b"copy"}, manifest=manifest, create=True,
                                  upload=False), FP, "LICENSE_ND_NO_DERIVATIVES", "logo@")


def test_only_accepted_revisions_can_be_parents(any_api: InProcessHub) -> None:
    api = any_api
    base = _create(api, "alice", "clamp", "CC-BY-SA-4.0")
    own = _create(api, "bob", "vise", "CC-BY-SA-4.0")
    proposal = _push(api, "bob", "clamp", "CC-BY-SA-4.0", (base,), b"proposed")()
    assert proposal.is_proposal
    refused(api, lambda: _fork(api, "bob", [("clamp", proposal.revision_id)], "clamp-fork"),
            FP, "PARENT_NOT_ACCEPTED", proposal.revision_id[:12])
    refused(api, _push(api, "bob", "vise", "CC-BY-SA-4.0", (own, proposal.revision_id), b"merge"),
            FP, "PARENT_NOT_ACCEPTED", "never accepted")
    declined = _push(api, "bob", "clamp", "CC-BY-SA-4.0", (base,), b"declined")()
    api.designs.DeclineProposal(designs_pb2.DeclineProposalRequest(
        design="clamp", proposal_id=declined.proposal_id, reason="no"), metadata=api.md("alice"))
    refused(api, lambda: _fork(api, "bob", [("clamp", declined.revision_id)], "clamp-declined"),
            FP, "PARENT_NOT_ACCEPTED")
    api.designs.AcceptProposal(designs_pb2.AcceptProposalRequest(design="clamp", proposal_id=proposal.proposal_id),
                               metadata=api.md("alice"))
    assert _fork(api, "bob", [("clamp", proposal.revision_id)], "clamp-fork").revision.parent_ids == [proposal.revision_id]


def test_a_remix_never_silently_replaces_a_file(any_api: InProcessHub) -> None:
    api = any_api
    _create(api, "alice", "frame", "MIT", {"part.stl": STL + b"frame", "lid/part.stl": STL + b"frame-lid"})
    _create(api, "alice", "lid", "MIT", {"part.stl": STL + b"lid"})
    # lid's part.stl would move to lid/part.stl, where frame already has a different file
    refused(api, lambda: _fork(api, "bob", [("frame", ""), ("lid", "")], "frame-lid", "MIT"),
            FP, "PATH_COLLISION", "frame", "lid", "lid/part.stl")
    # names equal after case folding are a clash too: the later parent's file moves aside
    _create(api, "alice", "case-a", "MIT", {"Part.stl": STL + b"A"})
    _create(api, "alice", "case-b", "MIT", {"part.stl": STL + b"B"})
    remix = _fork(api, "bob", [("case-a", ""), ("case-b", "")], "case-ab", "MIT")
    assert sorted(f.path for f in remix.revision.files) == ["Part.stl", "case-b/part.stl"]


def test_accept_runs_the_licence_law_again(any_api: InProcessHub) -> None:
    api = any_api
    base = _create(api, "alice", "lamp", "CC-BY-SA-4.0")
    # a proposal an older hub stored unchecked: it relicenses the design
    entry = FileEntry("part.stl", sha(STL + b"lamp"), len(STL + b"lamp"))
    revision = Revision(id=sha(b"lamp-mit"), design="lamp", parent_ids=(base,), files=(entry,), author="bob",
                        manifest_toml=manifest_toml("lamp", license="MIT", files=("part.stl",)),
                        created_at=now_z(), message="mit", kind=RevisionKind.PROPOSAL)
    api.composed.store.designs._thd_propose("lamp", base, revision, "p-legacy", now_z())
    accept = designs_pb2.AcceptProposalRequest(design="lamp", proposal_id="p-legacy")
    refused(api, lambda: api.designs.AcceptProposal(accept, metadata=api.md("alice")),
            FP, "LICENSE_CHANGE_NOT_MAINTAINER", "MIT")
    assert _design(api, "lamp").head_revision_id == base
