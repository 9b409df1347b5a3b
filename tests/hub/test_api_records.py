"""Community record and exports: PROV-JSON lineage shape and the OKH manifest."""

from __future__ import annotations

import json
import tomllib

import grpc
import pytest
from spimeforge.v1 import designs_pb2, nodes_pb2, records_pb2

from hub.jobs import JobSpec
from tests.hub.fake_agent import FakeAgent, printer
from tests.hub.harness import InProcessHub, exported, manifest_toml

STL = b"solid s\nendsolid s\n"


def _history(api: InProcessHub) -> dict[str, str]:
    files = ("part.stl",)
    first = api.push("alice", "bracket", {"part.stl": STL}, manifest=manifest_toml("bracket", license="CC-BY-4.0", files=files), create=True).revision_id
    second = api.push("alice", "bracket", {"part.stl": STL * 2}, manifest=manifest_toml("bracket", license="CC-BY-4.0", files=files, version="1.1.0"), parents=(first,)).revision_id
    proposal = api.push("bob", "bracket", {"part.stl": STL * 3}, manifest=manifest_toml("bracket", license="CC-BY-4.0", files=files, version="1.2.0"), parents=(second,))
    api.designs.AcceptProposal(designs_pb2.AcceptProposalRequest(design="bracket", proposal_id=proposal.proposal_id), metadata=api.md("alice"))
    fork = api.designs.Fork(designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design="bracket")], name="bracket-xl", license="CC-BY-SA-4.0"), metadata=api.md("bob"))
    return {"first": first, "second": second, "merged": proposal.revision_id, "fork": fork.revision.id}


def _export(api: InProcessHub, design: str, fmt: int) -> records_pb2.ExportResponse:
    media_type, document = exported(api, design, fmt)
    return records_pb2.ExportResponse(media_type=media_type, document=document)


def test_prov_json_of_a_fork_covers_its_whole_lineage(any_api: InProcessHub) -> None:
    api = any_api
    ids = _history(api)
    doc = json.loads(_export(api, "bracket-xl", records_pb2.EXPORT_FORMAT_PROV_JSON).document)
    assert doc["prefix"]["prov"] == "http://www.w3.org/ns/prov#"
    assert {f"rev:{i}" for i in ids.values()} == set(doc["entity"])
    assert {"person:alice", "person:bob", "licensor:Test_Licensor", "licensor:bob"} == set(doc["agent"])
    assert {a["prov:type"]["$"] for a in doc["agent"].values()} == {"prov:Person", "spime:Licensor"}
    kinds = {k: v["prov:type"]["$"] for k, v in doc["activity"].items()}
    assert kinds == {f"act:{ids['first']}": "spime:Push", f"act:{ids['second']}": "spime:Push",
                     f"act:{ids['merged']}": "spime:Merge", f"act:{ids['fork']}": "spime:Fork"}
    derivations = {(d["prov:generatedEntity"], d["prov:usedEntity"]): d for d in doc["wasDerivedFrom"].values()}
    revision = derivations[(f"rev:{ids['second']}", f"rev:{ids['first']}")]
    assert revision["prov:type"] == {"$": "prov:Revision", "type": "prov:QUALIFIED_NAME"}
    remix = derivations[(f"rev:{ids['fork']}", f"rev:{ids['merged']}")]
    assert remix["prov:type"]["$"] == "spime:Remix" and remix["spime:derivation"] == "remix"
    generated = {g["prov:entity"] for g in doc["wasGeneratedBy"].values()}
    assert generated == set(doc["entity"])
    reviewers = [a for a in doc["wasAssociatedWith"].values() if a["prov:role"]["$"] == "spime:maintainer"]
    assert reviewers == [{"prov:activity": f"act:{ids['merged']}", "prov:agent": "person:alice", "prov:role": {"$": "spime:maintainer", "type": "prov:QUALIFIED_NAME"}}]


def test_okh_manifest_has_the_required_fields(any_api: InProcessHub) -> None:
    api = any_api
    ids = _history(api)
    response = _export(api, "bracket-xl", records_pb2.EXPORT_FORMAT_OKH)
    assert response.media_type == "application/toml"
    okh = tomllib.loads(response.document.decode())
    for key in ("okhv", "name", "repo", "license", "licensor", "function"):
        assert okh[key], key
    assert okh["license"] == "CC-BY-SA-4.0" and okh["licensor"] == "bob" and okh["version"] == "1.2.0"
    assert okh["forkOf"][0].endswith(ids["merged"]) and okh["release"].endswith(ids["fork"])
    assert okh["okhv"] == "OKH-LOSHv1.0" and okh["repo"].startswith("https://")
    assert okh["part"] == [{"name": "body", "export": ["part.stl"], "material": "PLA"}]


def test_community_record(any_api: InProcessHub) -> None:
    api = any_api
    ids = _history(api)
    record = api.records.GetRecord(records_pb2.GetRecordRequest(design="bracket"), metadata=api.md("carol"))
    people = {c.name: c for c in record.contributors}
    assert people["alice"].revisions == 2 and set(people["alice"].roles) == {"author", "maintainer", "reviewer"}
    assert people["bob"].accepted_proposals == 1 and record.revision_count == 3
    assert [(e.child_design, e.parent_revision_id) for e in record.lineage] == [("bracket-xl", ids["merged"])]
    fork = api.records.GetRecord(records_pb2.GetRecordRequest(design="bracket-xl"), metadata=api.md("carol"))
    assert [a.design for a in fork.attributions] == ["bracket"]


def test_export_errors(any_api: InProcessHub) -> None:
    api = any_api
    _history(api)
    with pytest.raises(grpc.RpcError) as info:
        _export(api, "nope", records_pb2.EXPORT_FORMAT_OKH)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        _export(api, "bracket", records_pb2.EXPORT_FORMAT_UNSPECIFIED)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_record_carries_fabrications_ratings_and_ledger(any_api: InProcessHub) -> None:
    api = any_api
    import sqlalchemy as sa

    from hub.store import schema

    ids = _history(api)
    # The fabrication comes from a (fake) node agent printing a job over the real Nodes service.
    agent = FakeAgent.enrolled(api, "lab-1", [printer("mk3s")])
    agent.connect()
    api.composed.hub.jobs._thd_create_job(JobSpec("bracket", ids["merged"], "PLA"), "admin")
    job_id, epoch = agent.take_job()
    agent.run_to_printed(job_id, epoch, "mk3s")
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_OUTCOME, {"outcome": "success"}))
    agent.close()
    with api.engine.begin() as conn:
        conn.execute(sa.insert(schema.orders).values(id="o-1", customer="carol", design="bracket", revision_id=ids["merged"],
                                                     state="completed", created_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z"))
        conn.execute(sa.insert(schema.ratings).values(design="bracket", order_id="o-1", rater="carol", role="customer", stars=5,
                                                      criteria='{"fit": 4}', comment="great", at="2026-01-02T00:00:00Z"))
        conn.execute(sa.insert(schema.ledger_entries).values(order_id="o-1", design="bracket", recipient="alice", share="design",
                                                             currency="EUR", minor_units=120, equation_version="v1", at="2026-01-02T00:00:00Z"))
    record = api.records.GetRecord(records_pb2.GetRecordRequest(design="bracket"), metadata=api.md("carol"))
    [fab] = record.fabrications
    assert (fab.node, fab.actual_seconds, fab.settings["layer_height_mm"], fab.outcome) == ("lab-1", 640, "0.2", "success")
    [rating] = record.ratings
    assert rating.stars == 5 and rating.criteria["fit"] == 4 and rating.at.ToJsonString() == "2026-01-02T00:00:00Z"
    [line] = record.ledger
    assert (line.recipient, line.amount.currency, line.amount.minor_units) == ("alice", "EUR", 120)
