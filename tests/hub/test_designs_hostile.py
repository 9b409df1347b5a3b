"""Designs, accounts and records under a hostile sweep: oversized remixes, proposals pushed twice,
concurrent limits, maintainer roles, part-name clashes, exact licence search and PROV agent ids.

Each runs on SQLite and on PostgreSQL (``any_api``)."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
import pytest
import sqlalchemy as sa
from prov.model import ProvDocument
from spimeforge.v1 import accounts_pb2, common_pb2, designs_pb2, records_pb2, records_pb2_grpc

from hub import limits
from hub.api.server import MAX_MESSAGE_BYTES
from hub.errors import FailedPrecondition
from hub.service.accounts import MAX_KEYS_PER_ACCOUNT
from hub.service.forks import _check_size
from hub.store import schema
from hub.store.designs import DesignMeta
from tests.hub.harness import InProcessHub, exported, manifest_toml, now_z, register_key, sha
from tests.hub.refusal import refused

FAILED, EXISTS = grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS


def _create(api: InProcessHub, user: str, slug: str, files: dict[str, bytes] | None = None,
            license: str = "CC-BY-4.0") -> designs_pb2.PushResponse:
    files = files or {"a.txt": b"hello " + slug.encode()}
    return api.push(user, slug, files, manifest=manifest_toml(slug, files=tuple(files), license=license), create=True)


def _fork(api: InProcessHub, user: str, name: str, *parents: str) -> Callable[[], designs_pb2.ForkResponse]:
    request = designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design=p) for p in parents], name=name,
                                      license="CC-BY-4.0")
    return lambda: api.designs.Fork(request, metadata=api.md(user))


# -- 1. a remix is never larger than one revision may be ------------------------------------------------


def test_a_remix_over_max_files_is_refused_before_anything_is_stored(any_api: InProcessHub) -> None:
    half = limits.MAX_FILES // 2 + 1
    for slug in ("wide-a", "wide-b"):
        head = _create(any_api, "alice", slug, {"a.txt": b"x"}).revision_id
        entries = [common_pb2.FileEntry(path=f"{slug}/{i:04d}.txt", sha256=sha(b"x"), size=1) for i in range(half)]
        entries.append(common_pb2.FileEntry(path="a.txt", sha256=sha(b"x"), size=1))
        manifest = manifest_toml(slug, files=("a.txt",), version="1.1.0")
        any_api.push("alice", slug, {"a.txt": b"x"}, manifest=manifest, parents=(head,), entries=entries, upload=False)
    refused(any_api, _fork(any_api, "bob", "wide-mix", "wide-a", "wide-b"), FAILED, "REMIX_TOO_LARGE",
            "wide-a@", "wide-b@", f"{2 * half + 1:,} files", f"{limits.MAX_FILES:,}")


def test_a_remix_over_the_answer_budget_is_refused() -> None:
    # Within MAX_FILES and MAX_MANIFEST_BYTES a remix still carries its inherited attributions.
    with pytest.raises(FailedPrecondition) as info:
        _check_size([], [], 1000, limits.PAGE_MAX_BYTES)
    assert info.value.reason == "REMIX_TOO_LARGE" and f"{limits.PAGE_MAX_BYTES:,}" in info.value.message


def test_a_stored_revision_over_the_message_limit_is_refused_not_sent(any_api: InProcessHub) -> None:
    # What an older hub could store (a 12-parent remix): GetRevision and Log say why instead of failing in gRPC.
    first = _create(any_api, "alice", "huge").revision_id
    store = any_api.composed.store.designs
    head = store._thd_get_revision("huge", first)
    big = replace(head, id="f" * 64, parent_ids=(first,), message="m" * (9 << 20))
    store._thd_advance("huge", first, big, DesignMeta("Huge", "", "CC-BY-4.0", ()), now_z())
    request = designs_pb2.GetRevisionRequest(design="huge")
    refused(any_api, lambda: any_api.designs.GetRevision(request, metadata=any_api.md("carol")),
            grpc.StatusCode.RESOURCE_EXHAUSTED, "ANSWER_TOO_LARGE", "huge@ffffffffffff")
    log = designs_pb2.LogRequest(design="huge")
    refused(any_api, lambda: any_api.designs.Log(log, metadata=any_api.md("carol")),
            grpc.StatusCode.RESOURCE_EXHAUSTED, "ANSWER_TOO_LARGE", "huge@ffffffffffff")
    older = any_api.designs.Log(designs_pb2.LogRequest(design="huge", from_revision_id=first), metadata=any_api.md("carol"))
    assert [r.id for r in older.revisions] == [first]


# -- 2. a head is never a proposal that was not accepted ----------------------------------------------------


def _bobs_push(api: InProcessHub, slug: str) -> tuple[str, Callable[[], designs_pb2.PushResponse]]:
    """alice's new design ``slug`` (its first revision's id) and one push by bob, the same each time it runs."""
    base = _create(api, "alice", slug).revision_id
    files, at = {"a.txt": f"bob's {slug}".encode()}, now_z()
    manifest = manifest_toml(slug, files=("a.txt",), version="1.1.0")

    def push() -> designs_pb2.PushResponse:
        return api.push("bob", slug, files, manifest=manifest, parents=(base,), created_at=at, message="m")

    return base, push


def test_a_proposal_pushed_again_by_a_new_maintainer_is_refused(any_api: InProcessHub) -> None:
    base, again = _bobs_push(any_api, "cube")
    proposal = again()
    assert proposal.is_proposal
    refused(any_api, again, EXISTS, "REVISION_IS_OPEN_PROPOSAL", proposal.proposal_id)  # no second proposal
    any_api.designs.AddMaintainer(designs_pb2.AddMaintainerRequest(design="cube", account="bob"),
                                  metadata=any_api.md("alice"))
    refused(any_api, again, EXISTS, "REVISION_IS_OPEN_PROPOSAL", proposal.proposal_id, "accept")
    design = any_api.designs.GetDesign(designs_pb2.GetDesignRequest(design="cube"), metadata=any_api.md("carol"))
    assert design.head_revision_id == base and design.revision_count == 1
    accepted = any_api.designs.AcceptProposal(
        designs_pb2.AcceptProposalRequest(design="cube", proposal_id=proposal.proposal_id), metadata=any_api.md("alice"))
    assert accepted.design.head_revision_id == proposal.revision_id and accepted.design.revision_count == 2


def test_a_declined_proposal_pushed_again_by_a_maintainer_is_refused(any_api: InProcessHub) -> None:
    _, again = _bobs_push(any_api, "plate")
    proposal = again()
    any_api.designs.DeclineProposal(designs_pb2.DeclineProposalRequest(
        design="plate", proposal_id=proposal.proposal_id, reason="no"), metadata=any_api.md("alice"))
    any_api.designs.AddMaintainer(designs_pb2.AddMaintainerRequest(design="plate", account="bob"),
                                  metadata=any_api.md("alice"))
    refused(any_api, again, EXISTS, "REVISION_EXISTS", proposal.proposal_id, "declined")


# -- 3. limits checked under concurrency ------------------------------------------------------------------


def _together(count: int, call: Callable[[int], object]) -> list[str]:
    barrier = threading.Barrier(count)

    def one(index: int) -> str:
        barrier.wait()
        try:
            call(index)
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return "OK"

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_add_maintainer_adds_each_once(any_api: InProcessHub) -> None:
    any_api.add_user("m3", "designer")
    any_api.add_user("m4", "designer")
    _create(any_api, "alice", "madd")
    who = ["m3", "m3", "m4", "m4", "m3", "m4"]
    results = _together(len(who), lambda i: any_api.designs.AddMaintainer(
        designs_pb2.AddMaintainerRequest(design="madd", account=who[i]), metadata=any_api.md("alice")))
    assert results == ["OK"] * len(who)
    design = any_api.designs.GetDesign(designs_pb2.GetDesignRequest(design="madd"), metadata=any_api.md("carol"))
    assert design.maintainers[0] == "alice" and sorted(design.maintainers[1:]) == ["m3", "m4"]


def test_concurrent_key_registrations_keep_the_per_account_limit(any_api: InProcessHub) -> None:
    limit = MAX_KEYS_PER_ACCOUNT
    for _ in range(limit - 4):
        register_key(any_api, "bob", os.urandom(32))
    results = _together(8, lambda _: register_key(any_api, "bob", os.urandom(32)))
    assert sorted(results) == ["OK"] * 4 + ["RESOURCE_EXHAUSTED"] * 4
    held = any_api.accounts.ListKeys(accounts_pb2.ListKeysRequest(account="bob"), metadata=any_api.md("bob")).keys
    assert len(held) == limit


# -- 4. only designers (and admins) maintain designs ------------------------------------------------------


@pytest.mark.parametrize(("account", "role"), [("carol", "customer"), ("olga", "operator"), ("nodey", "node")])
def test_add_maintainer_refuses_accounts_that_cannot_design(any_api: InProcessHub, account: str, role: str) -> None:
    any_api.add_user("nodey", "node")
    _create(any_api, "alice", "maint")
    request = designs_pb2.AddMaintainerRequest(design="maint", account=account)
    refusal = refused(any_api, lambda: any_api.designs.AddMaintainer(request, metadata=any_api.md("alice")), FAILED,
                      "MAINTAINER_ROLE", account, "cannot maintain designs")
    assert f"a {role} account" not in refusal.message  # a designer learns no other account's role
    admin = any_api.designs.AddMaintainer(designs_pb2.AddMaintainerRequest(design="maint", account="admin"),
                                          metadata=any_api.md("alice"))
    assert list(admin.maintainers) == ["alice", "admin"]


# -- 5. a remix renames clashing part names until they are free --------------------------------------------


def test_a_remix_renames_part_names_until_free(any_api: InProcessHub) -> None:
    manifest = manifest_toml("xx", files=("a.txt",)) + '\n[[parts]]\nname = "body (yy)"\nfiles = ["a.txt"]\n'
    any_api.push("alice", "xx", {"a.txt": b"x1"}, manifest=manifest, create=True)
    _create(any_api, "bob", "yy", {"b.txt": b"y1"})
    remix = _fork(any_api, "bob", "xy", "xx", "yy")()
    assert '"body (yy) 2"' in remix.revision.manifest_toml
    assert remix.revision.manifest_toml.count('name = "body') == 3


# -- 6. a licence search compares ids exactly on both databases ---------------------------------------------


def test_search_by_licence_ref_is_exact(any_api: InProcessHub) -> None:
    _create(any_api, "alice", "refd", license="LicenseRef-Foo")
    _create(any_api, "alice", "other", license="CC-BY-4.0")

    def found(licence: str) -> list[str]:
        answer = any_api.designs.Search(designs_pb2.SearchRequest(license=licence), metadata=any_api.md("carol"))
        return [d.slug for d in answer.designs]

    assert found("LicenseRef-Foo") == ["refd"]
    assert found("LicenseRef-FOO") == [] and found("LicenseRef-Fo") == []
    assert found("cc-by-4.0") == ["other"]  # SPDX ids are canonicalised before the search


# -- 7. PROV agents: one id per exact name ---------------------------------------------------------------------


def _exported(api: InProcessHub, request: records_pb2.ExportRequest) -> bytes:
    return exported(api, request.design, request.format)[1]


def test_prov_gives_each_licensor_its_own_agent(any_api: InProcessHub) -> None:
    head = _create(any_api, "alice", "lic").revision_id
    names = ["Test, Licensor", 'Test"Licensor', "Test_Licensor"]
    for index, name in enumerate(names):
        manifest = manifest_toml("lic", files=("a.txt",), version=f"1.{index + 1}.0").replace(
            'licensor = "Test Licensor"', f"licensor = {json.dumps(name)}")
        head = any_api.push("alice", "lic", {"a.txt": f"v{index}".encode()}, manifest=manifest,
                            parents=(head,)).revision_id
    request = records_pb2.ExportRequest(design="lic", format=records_pb2.EXPORT_FORMAT_PROV_JSON)
    text = _exported(any_api, request).decode()
    doc = json.loads(text)
    labels = {k: v["prov:label"] for k, v in doc["agent"].items() if k.startswith("licensor:")}
    assert sorted(labels.values()) == sorted(["Test Licensor", *names]) and len(labels) == 4
    assert labels["licensor:Test_Licensor"] == "Test Licensor"
    attributed = {v["prov:agent"] for k, v in doc["wasAttributedTo"].items() if k.startswith("_:lic")}
    assert attributed == set(labels)
    parsed = ProvDocument.deserialize(content=text, format="json")
    agents = {str(r.identifier) for r in parsed.get_records() if r.get_type().localpart == "Agent"}
    assert set(labels) <= agents


# -- 8. a PROV export reads the lineage's accepted proposals only ---------------------------------------------


def test_prov_export_reads_only_the_lineage_accepted_proposals(any_api: InProcessHub,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    base = _create(any_api, "alice", "many").revision_id
    manifest = manifest_toml("many", files=("a.txt",), version="1.1.0")
    merged = any_api.push("bob", "many", {"a.txt": b"merged"}, manifest=manifest, parents=(base,))
    for index in range(3):  # open proposals: none of them is in the lineage
        any_api.push("bob", "many", {"a.txt": f"open {index}".encode()}, manifest=manifest, parents=(base,))
    any_api.designs.AcceptProposal(designs_pb2.AcceptProposalRequest(design="many", proposal_id=merged.proposal_id),
                                   metadata=any_api.md("alice"))

    def every_proposal(*args: object) -> None:
        raise AssertionError("the export listed every proposal of the design")

    monkeypatch.setattr(any_api.composed.hub.records.designs, "_thd_list_proposals", every_proposal)
    request = records_pb2.ExportRequest(design="many", format=records_pb2.EXPORT_FORMAT_PROV_JSON)
    doc = json.loads(_exported(any_api, request))
    assert doc["activity"][f"act:{merged.revision_id}"]["prov:type"]["$"] == "spime:Merge"
    assert {v["prov:agent"] for k, v in doc["wasAssociatedWith"].items() if k.startswith("_:review")} == {"person:alice"}
    assert len([k for k in doc["entity"] if k.startswith("rev:")]) == 2


@pytest.mark.parametrize("token", ["\u00b2", "\u0663", "1\u00b2"])
def test_a_page_token_of_other_digits_is_not_one_the_hub_issued(any_api: InProcessHub, token: str) -> None:
    """str.isdigit() takes superscripts and other scripts' digits; int() refuses or reads them."""
    api = any_api
    _create(api, "alice", "cube")
    page = common_pb2.PageRequest(page_token=token)
    for call in (lambda: api.designs.Search(designs_pb2.SearchRequest(text="cube", page=page), metadata=api.md("carol")),
                 lambda: api.designs.ListProposals(designs_pb2.ListProposalsRequest(design="cube", page=page),
                                                   metadata=api.md("alice"))):
        refused(api, call, grpc.StatusCode.INVALID_ARGUMENT, ("INVALID_ARGUMENT", "PAGE_TOKEN", ""), "page token")


def test_a_prov_export_larger_than_a_message_streams_whole(any_api: InProcessHub) -> None:
    """3,500 ordinary revisions make a PROV document over the 8 MiB a message may carry (2.7 KB each):
    it comes in chunks and parses (one answer of it was RESOURCE_EXHAUSTED from the transport)."""
    head = _create(any_api, "alice", "long")
    revisions, parents, files = schema.revisions, schema.revision_parents, schema.revision_files
    with any_api.engine.begin() as conn:
        first = conn.execute(sa.select(revisions).where(revisions.c.id == head.revision_id)).one()._asdict()
        stored = [f._asdict() for f in conn.execute(sa.select(files).where(files.c.revision_id == head.revision_id))]
        ids = [head.revision_id] + [f"{i:064x}" for i in range(1, 3501)]
        conn.execute(revisions.insert(), [{**first, "id": ids[i], "seq": first["seq"] + i}
                                          for i in range(1, len(ids))])
        conn.execute(parents.insert(), [{"revision_id": ids[i], "position": 0, "parent_id": ids[i - 1]}
                                        for i in range(1, len(ids))])
        conn.execute(files.insert(), [{**f, "revision_id": r} for r in ids[1:] for f in stored])
        conn.execute(schema.designs.update().where(schema.designs.c.slug == "long").values(head_revision_id=ids[-1]))
    request = records_pb2.ExportRequest(design="long", format=records_pb2.EXPORT_FORMAT_PROV_JSON)
    document = _exported(any_api, request)
    assert len(document) > MAX_MESSAGE_BYTES
    doc = json.loads(document)
    assert len([k for k in doc["entity"] if k.startswith("rev:")]) == len(ids)


# -- 4. decisions on one design at once, alike on both databases --------------------------------------------


def _proposals(api: InProcessHub, slug: str, count: int) -> tuple[str, list[str]]:
    """A design and ``count`` proposals by bob against its head: (head, proposal ids)."""
    head = _create(api, "alice", slug).revision_id
    ids = [api.push("bob", slug, {"a.txt": f"bob {n}".encode()}, manifest=manifest_toml(slug, files=("a.txt",)),
                    parents=(head,), message=f"idea {n}").proposal_id for n in range(count)]
    return head, ids


def test_a_proposal_declined_at_once_is_declined_once(any_api: InProcessHub) -> None:
    _, (pid,) = _proposals(any_api, "dec", 1)
    results = _together(8, lambda i: any_api.designs.DeclineProposal(designs_pb2.DeclineProposalRequest(
        design="dec", proposal_id=pid, reason=f"no {i}"), metadata=any_api.md("alice")))
    assert sorted(results) == ["FAILED_PRECONDITION"] * 7 + ["OK"], results


def test_proposals_accepted_at_once_move_the_head_once(any_api: InProcessHub) -> None:
    """PostgreSQL accepted all six (each read the head before the others wrote it): the head was the last."""
    _, ids = _proposals(any_api, "acc", 6)
    results = _together(6, lambda i: any_api.designs.AcceptProposal(designs_pb2.AcceptProposalRequest(
        design="acc", proposal_id=ids[i]), metadata=any_api.md("alice")))
    assert sorted(results) == ["FAILED_PRECONDITION"] * 5 + ["OK"], results
    listed = any_api.designs.ListProposals(designs_pb2.ListProposalsRequest(design="acc", include_closed=True),
                                           metadata=any_api.md("alice")).proposals
    accepted = [p for p in listed if p.state == designs_pb2.PROPOSAL_STATE_ACCEPTED]
    head = any_api.designs.GetDesign(designs_pb2.GetDesignRequest(design="acc"), metadata=any_api.md("bob"))
    assert len(accepted) == 1 and head.head_revision_id == accepted[0].revision.id


def test_accept_and_decline_at_once_decide_a_proposal_once(any_api: InProcessHub) -> None:
    """PostgreSQL answered both OK, and the head could be a proposal stored as declined."""
    for round_ in range(4):
        slug = f"duel{round_}"
        head, (pid,) = _proposals(any_api, slug, 1)
        accept = designs_pb2.AcceptProposalRequest(design=slug, proposal_id=pid)
        decline = designs_pb2.DeclineProposalRequest(design=slug, proposal_id=pid, reason="no")
        decide = (functools.partial(any_api.designs.AcceptProposal, accept, metadata=any_api.md("alice")),
                  functools.partial(any_api.designs.DeclineProposal, decline, metadata=any_api.md("alice")))
        results = _together(2, lambda i, decide=decide: decide[i]())
        assert sorted(results) == ["FAILED_PRECONDITION", "OK"], results
        proposal = any_api.designs.ListProposals(designs_pb2.ListProposalsRequest(
            design=slug, include_closed=True), metadata=any_api.md("alice")).proposals[0]
        now = any_api.designs.GetDesign(designs_pb2.GetDesignRequest(design=slug), metadata=any_api.md("bob"))
        accepted = proposal.state == designs_pb2.PROPOSAL_STATE_ACCEPTED
        assert now.head_revision_id == (proposal.revision.id if accepted else head)


def test_the_same_blob_uploaded_at_once_is_stored_once(any_api: InProcessHub) -> None:
    """PostgreSQL answered INTERNAL to the uploads whose insert came second."""
    data = os.urandom(4096)
    results = _together(8, lambda i: any_api.upload("alice", data))
    assert results == ["OK"] * 8, results
    with any_api.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.blobs).where(
            schema.blobs.c.sha256 == sha(data))) == 1


def test_proposals_come_only_at_the_co_create_rung(any_api: InProcessHub) -> None:
    head = _create(any_api, "alice", "rungs").revision_id
    records = records_pb2_grpc.RecordsStub(any_api.channel)
    for rung in ("consume", "co-design", "co-create"):
        records.SetParticipation(records_pb2.SetParticipationRequest(design="rungs", rung=rung),
                                 metadata=any_api.md("alice"))
        any_api.upload("bob", rung.encode())

        def push(rung: str = rung) -> designs_pb2.PushResponse:
            return any_api.push("bob", "rungs", {"a.txt": rung.encode()}, upload=False,
                                manifest=manifest_toml("rungs", files=("a.txt",)), parents=(head,))
        if rung != "co-create":
            refused(any_api, push, FAILED, "NOT_OPEN_TO_PROPOSALS", f"open to {rung} only", "co-create")
        else:
            assert push().is_proposal


def test_pages_neither_repeat_nor_skip_when_the_list_changes_between_them(any_api: InProcessHub) -> None:
    """Page tokens were offsets: a design created before the next page's start repeated one on it, and a
    proposal declined after page one hid one of page two."""
    api, carol = any_api, any_api.md("carol")
    for slug in ("bb", "cc", "dd", "ee"):
        _create(api, "alice", slug)
    first = api.designs.Search(designs_pb2.SearchRequest(page={"page_size": 2}), metadata=carol)
    _create(api, "alice", "aa")
    rest = api.designs.Search(designs_pb2.SearchRequest(page={"page_size": 10, "page_token": first.next_page_token}),
                              metadata=carol)
    assert [d.slug for d in [*first.designs, *rest.designs]] == ["bb", "cc", "dd", "ee"]
    _, ids = _proposals(api, "pages", 6)
    alice = api.md("alice")
    page = api.designs.ListProposals(designs_pb2.ListProposalsRequest(design="pages", page={"page_size": 3}),
                                     metadata=alice)
    api.designs.DeclineProposal(designs_pb2.DeclineProposalRequest(design="pages", proposal_id=page.proposals[0].id,
                                                                   reason="no"), metadata=alice)
    more = api.designs.ListProposals(designs_pb2.ListProposalsRequest(
        design="pages", page={"page_size": 3, "page_token": page.next_page_token}), metadata=alice)
    assert sorted(p.id for p in [*page.proposals, *more.proposals]) == sorted(ids)
