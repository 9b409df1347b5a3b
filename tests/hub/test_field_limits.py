"""Every request field has a documented maximum, and list answers page within a byte cap.

Each refusal is INVALID_ARGUMENT naming the limit, and nothing stored changes;
each list RPC returns every item across its pages with no page over
hub.limits.PAGE_MAX_BYTES. Both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from spimeforge.v1 import common_pb2, designs_pb2, orders_pb2, orders_pb2_grpc, records_pb2

from hub import limits
from hub.store import schema
from tests.hub.grant_signing import registered_key, signed_grant
from tests.hub.harness import InProcessHub, manifest_toml

CUBE = b"solid cube\nendsolid cube\n"
LONG = "x" * 70_000


def _refused(api: InProcessHub, call: Callable[[], Any], limit: str,
             code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
    before = api.snapshot()
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert f"limit {limit}" in (info.value.details() or ""), info.value.details()
    assert api.snapshot() == before


def _push(api: InProcessHub, **fields: Any) -> Callable[[], Any]:
    request = api.push_request("cube", {"cube.stl": CUBE}, create=True)
    for name, value in fields.items():
        field = getattr(request, name)
        if isinstance(value, list):
            del field[:]
            field.extend(value)
        else:
            setattr(request, name, value)
    return lambda: api.designs.Push(request, metadata=api.md("alice"))


def test_each_field_maximum_is_refused_naming_its_limit(any_api: InProcessHub) -> None:
    api = any_api
    api.push("alice", "cube", {"cube.stl": CUBE}, create=True)
    d, carol, alice = api.designs, api.md("carol"), api.md("alice")
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: d.Search(designs_pb2.SearchRequest(tags=[f"t{i}" for i in range(5000)]), metadata=carol),
         "SearchRequest.tags"),
        (lambda: d.Search(designs_pb2.SearchRequest(tags=["t" * 65]), metadata=carol), "SearchRequest.tags[]"),
        (lambda: d.Search(designs_pb2.SearchRequest(text="w " * 200), metadata=carol), "SearchRequest.text"),
        (lambda: d.Search(designs_pb2.SearchRequest(page=common_pb2.PageRequest(page_size=501)), metadata=carol),
         "PageRequest.page_size"),
        (lambda: d.GetDesign(designs_pb2.GetDesignRequest(design="c" * 100), metadata=carol),
         "GetDesignRequest.design"),
        (lambda: d.Log(designs_pb2.LogRequest(design="cube", page=common_pb2.PageRequest(page_token="z" * 65)),
                       metadata=carol), "PageRequest.page_token"),
        (_push(api, message=LONG), "PushRequest.message"),
        (_push(api, manifest_toml="#" * (limits.MAX_MANIFEST_BYTES + 1)), "PushRequest.manifest_toml"),
        (_push(api, parent_ids=["a" * 64] * 17), "PushRequest.parent_ids"),
        (_push(api, files=[common_pb2.FileEntry(path=f"f{i}.txt", sha256="a" * 64, size=1)
                           for i in range(limits.MAX_FILES + 1)]), "PushRequest.files"),
        (_push(api, files=[common_pb2.FileEntry(path="p" * 1025, sha256="a" * 64, size=1)]), "FileEntry.path"),
        (lambda: d.Fork(designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design="cube")], name="fork",
                                                 title="t" * 201), metadata=alice), "ForkRequest.title"),
        (lambda: d.Fork(designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design="cube" * 20)], name="fork"),
                        metadata=alice), "ForkParent.design"),
        (lambda: d.DeclineProposal(designs_pb2.DeclineProposalRequest(design="cube", proposal_id="p-1",
                                                                      reason="r" * 5000), metadata=alice),
         "DeclineProposalRequest.reason"),
        (lambda: d.MissingBlobs(designs_pb2.MissingBlobsRequest(sha256=["a" * 64] * 10_001), metadata=alice),
         "MissingBlobsRequest.sha256"),
        (lambda: list(api.records.Export(records_pb2.ExportRequest(design="cube", revision_id="r" * 65), metadata=carol)),
         "ExportRequest.revision_id"),
    ]
    for call, limit in cases:
        _refused(api, call, limit)


def test_nul_characters_are_refused_the_same_on_both_databases(any_api: InProcessHub) -> None:
    api = any_api
    api.push("alice", "cube", {"cube.stl": CUBE}, create=True)
    before = api.snapshot()
    with pytest.raises(grpc.RpcError) as info:
        api.designs.Search(designs_pb2.SearchRequest(text="cu\x00be"), metadata=api.md("carol"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "NUL" in (info.value.details() or "")
    assert api.snapshot() == before


@pytest.mark.parametrize("bad", ["\x1b[2J", "\u202e", "\u2066", "\x07", "\x9b", "a\rb"])
def test_control_and_bidi_characters_are_refused_in_text_others_read(any_api: InProcessHub, bad: str) -> None:
    api = any_api
    api.push("alice", "cube", {"cube.stl": CUBE}, create=True)
    d, alice = api.designs, api.md("alice")
    fork = designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design="cube")], name="fork", title=f"x{bad}")
    decline = designs_pb2.DeclineProposalRequest(design="cube", proposal_id="p-1", reason=f"no{bad}")
    for call, field in ((_push(api, message=f"fix{bad}"), "PushRequest.message"),
                        (lambda: d.Fork(fork, metadata=alice), "ForkRequest.title"),
                        (lambda: d.DeclineProposal(decline, metadata=alice), "DeclineProposalRequest.reason"),
                        (lambda: d.Search(designs_pb2.SearchRequest(text=f"cube{bad}"), metadata=alice),
                         "SearchRequest.text")):
        before = api.snapshot()
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert f"{field} holds the control or bidi character" in (info.value.details() or "")
        assert api.snapshot() == before


def test_a_message_of_several_lines_keeps_tabs_and_line_ends(any_api: InProcessHub) -> None:
    api = any_api
    message = "Thicker walls\r\n\n\t- 2 mm instead of 1.2\n"
    pushed = api.push("alice", "cube", {"cube.stl": CUBE}, create=True, message=message)
    rev = api.designs.GetRevision(designs_pb2.GetRevisionRequest(design="cube", revision_id=pushed.revision_id),
                                  metadata=api.md("carol"))
    assert rev.message == message


def _big_manifest(design: str, version: int) -> str:
    # A TOML comment makes each revision (and so each page entry) about 200 KB.
    return manifest_toml(design, version=f"1.0.{version}") + "#" + "x" * 200_000 + "\n"


def test_log_and_proposals_page_through_everything_within_the_byte_cap(any_api: InProcessHub) -> None:
    api = any_api
    heads = [api.push("alice", "big", {"cube.stl": CUBE}, manifest=_big_manifest("big", 0), create=True).revision_id]
    for version in range(1, 25):
        heads.append(api.push("alice", "big", {"cube.stl": CUBE}, manifest=_big_manifest("big", version),
                              parents=(heads[-1],)).revision_id)
    for version in range(25, 47):
        api.push("bob", "big", {"cube.stl": CUBE}, manifest=_big_manifest("big", version), parents=(heads[-1],))

    pages = _pages(lambda token: api.designs.Log(designs_pb2.LogRequest(
        design="big", page=common_pb2.PageRequest(page_size=500, page_token=token)), metadata=api.md("carol")))
    assert [r.id for page in pages for r in page.revisions] == heads[::-1]
    assert len(pages) >= 2 and all(p.ByteSize() <= limits.PAGE_MAX_BYTES + 1024 for p in pages)

    small = _pages(lambda token: api.designs.Log(designs_pb2.LogRequest(
        design="big", page=common_pb2.PageRequest(page_size=10, page_token=token)), metadata=api.md("carol")))
    assert [len(p.revisions) for p in small] == [10, 10, 5]

    pages_p = _pages(lambda token: api.designs.ListProposals(designs_pb2.ListProposalsRequest(
        design="big", page=common_pb2.PageRequest(page_size=500, page_token=token)), metadata=api.md("alice")))
    proposals = [p.id for page in pages_p for p in page.proposals]
    assert len(proposals) == len(set(proposals)) == 22
    assert len(pages_p) >= 2 and all(p.ByteSize() <= limits.PAGE_MAX_BYTES + 1024 for p in pages_p)
    # An old client (no page) gets the first page and the token to go on.
    old = api.designs.ListProposals(designs_pb2.ListProposalsRequest(design="big"), metadata=api.md("alice"))
    assert [p.id for p in old.proposals] == proposals[:len(old.proposals)] and old.next_page_token


def test_list_grants_pages_through_everything_within_the_byte_cap(any_api: InProcessHub) -> None:
    api = any_api
    api.push("alice", "cube", {"cube.stl": CUBE}, create=True)
    stub = orders_pb2_grpc.OrdersStub(api.channel)
    stub.Grant(signed_grant(registered_key(api, "alice"), "alice", "cube", node="n" * 63), metadata=api.md("alice"))
    g = schema.grants
    with api.engine.begin() as conn:  # copies of the signed grant, each with a 10 KB statement: 12 MB in all
        row = dict(conn.execute(sa.select(g)).one()._mapping)
        conn.execute(g.insert(), [{**row, "id": f"{i:016x}", "statement_sha256": f"{i:064x}", "statement": "s" * 10_000}
                                  for i in range(1200)])
    expected = [row["id"], *(f"{i:016x}" for i in range(1200))]

    def listed(size: int) -> list[orders_pb2.ListGrantsResponse]:
        return _pages(lambda token: stub.ListGrants(orders_pb2.ListGrantsRequest(
            design="cube", page=common_pb2.PageRequest(page_size=size, page_token=token)), metadata=api.md("carol")))

    pages = listed(500)
    assert sorted(g.id for page in pages for g in page.grants) == sorted(expected)
    assert len(pages) >= 3 and all(p.ByteSize() <= limits.PAGE_MAX_BYTES + 1024 for p in pages)
    assert [len(p.grants) for p in listed(0)][:2] == [limits.DEFAULT_PAGE_SIZE] * 2
    for page, limit in ((common_pb2.PageRequest(page_size=501), "PageRequest.page_size"),
                        (common_pb2.PageRequest(page_token="z" * 65), "PageRequest.page_token")):
        _refused(api, lambda page=page: stub.ListGrants(orders_pb2.ListGrantsRequest(design="cube", page=page),
                                                        metadata=api.md("carol")), limit)
    with pytest.raises(grpc.RpcError) as info:
        stub.ListGrants(orders_pb2.ListGrantsRequest(design="cube", page=common_pb2.PageRequest(page_token="Zm9yZ2Vk")),
                        metadata=api.md("carol"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()


@pytest.mark.parametrize(("page", "limit"), [(common_pb2.PageRequest(page_token="z" * 65), "PageRequest.page_token"),
                                             (common_pb2.PageRequest(page_size=501), "PageRequest.page_size")])
def test_list_orders_names_the_page_limit_it_refuses(api: InProcessHub, page: common_pb2.PageRequest,
                                                     limit: str) -> None:
    stub = orders_pb2_grpc.OrdersStub(api.channel)
    _refused(api, lambda: stub.ListOrders(orders_pb2.ListOrdersRequest(page=page), metadata=api.md("carol")), limit)


def _pages(call: Callable[[str], Any]) -> list[Any]:
    pages, token = [call("")], None
    while (token := pages[-1].next_page_token) and len(pages) < 100:
        pages.append(call(token))
    return pages


@pytest.mark.parametrize(("field", "old", "new"), [
    ("title", 'title = "Cube"', r'title = "Cu\u202Ebe"'),
    ("title", 'title = "Cube"', r'title = "\u001B[2J\u001B[31mCube"'),
    ("title", 'title = "Cube"', r'title = "\u200B\u2060"'),
    ("licensor", 'licensor = "Test Licensor"', r'licensor = "Test\u202ELicensor"'),
    ("contributors", 'tags = ["test"]', 'tags = ["test"]\ncontributors = ["ev\\u202Eil"]'),
    ("parts[0].name", 'name = "body"', 'name = "bo\\u2066dy"'),
])
def test_manifest_text_others_read_is_checked_once_its_escapes_are_decoded(any_api: InProcessHub, field: str,
                                                                           old: str, new: str) -> None:
    manifest = manifest_toml("cube").replace(old, new)
    assert manifest != manifest_toml("cube") and manifest.isascii()
    with pytest.raises(grpc.RpcError) as info:
        any_api.push("alice", "cube", {"cube.stl": CUBE}, manifest=manifest, create=True)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert f"field '{field}'" in (info.value.details() or ""), info.value.details()


@pytest.mark.parametrize("title", ["   ", "\u00a0", "\u200b", "\u2060\ufeff", "\u3164"])
def test_a_fork_title_with_nothing_visible_is_invalid_argument_naming_it(any_api: InProcessHub, title: str) -> None:
    any_api.push("alice", "cube", {"cube.stl": CUBE}, create=True)
    fork = designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design="cube")], name="fork-1", title=title)
    before = any_api.snapshot()
    with pytest.raises(grpc.RpcError) as info:  # was FAILED_PRECONDITION "the manifests … cannot be merged"
        any_api.designs.Fork(fork, metadata=any_api.md("alice"), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert "ForkRequest.title must show at least one visible character" in (info.value.details() or "")
    assert any_api.snapshot() == before


def test_every_request_is_checked_against_its_field_limits_whichever_servicer_serves_it(any_api: InProcessHub) -> None:
    # The Records servicer registered overrides GetRecord and never checked GetRecordRequest.design.
    _refused(any_api, lambda: any_api.records.GetRecord(records_pb2.GetRecordRequest(design="c" * 100),
                                                        metadata=any_api.md("carol")), "GetRecordRequest.design")
    for message in limits.FIELD_LIMITS:
        assert any(hasattr(module, message) for module in (common_pb2, designs_pb2, orders_pb2, records_pb2)), message
