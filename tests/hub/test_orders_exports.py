"""The record's exports checked with the standards' own tools: PROV-JSON with `prov`, OKH with the OKH-LOSH schema."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
from prov.model import (
    PROV_ASSOCIATION,
    PROV_ATTR_ACTIVITY,
    PROV_ATTR_AGENT,
    PROV_ATTR_ENTITY,
    PROV_ATTR_GENERATED_ENTITY,
    PROV_ATTR_USED_ENTITY,
    PROV_DERIVATION,
    PROV_GENERATION,
    PROV_ROLE,
    PROV_TYPE,
    PROV_USAGE,
    ProvDocument,
)
from spimeforge.v1 import designs_pb2, records_pb2

from hub import exports
from hub.domain import Design, PrintabilityRecord, Revision, RevisionKind
from hub.jobs import JobSpec
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer
from tests.hub.harness import exported
from tests.hub.test_orders_api import FILES, cube_manifest

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "data" / "okh" / "okh-losh.schema.json").read_text())


def test_prov_json_parses_and_says_what_happened(hub: ClockedHub) -> None:
    first = hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True).revision_id
    second = hub.push("alice", "cube", dict(FILES) | {"calibration-cube.stl": FILES["calibration-cube.stl"] + b"\n"},
                      manifest=cube_manifest(), parents=(first,)).revision_id
    fork = hub.designs.Fork(designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design="cube")], name="cube-xl",
                                                    license="CC-BY-SA-4.0"), metadata=hub.md("bob")).revision.id
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    hub.composed.hub.jobs._thd_create_job(JobSpec("cube", second, "PLA", parameters={"size": "25"}), "admin")
    job_id = agent.print_job()
    text = exported(hub, "cube", records_pb2.EXPORT_FORMAT_PROV_JSON)[1].decode()
    assert "prov:hadRole" not in text
    doc = ProvDocument.deserialize(content=text, format="json")
    activities = {str(a.identifier): a for a in doc.get_records() if a.get_type().localpart == "Activity"}
    [fab] = [a for a in activities.values() if str(a.get_asserted_types().pop()) == "spime:Fabrication"]
    assoc = [r for r in doc.get_records() if r.get_type() == PROV_ASSOCIATION
             and r.get_attribute(PROV_ATTR_ACTIVITY) == {fab.identifier}]
    assert [str(next(iter(r.get_attribute(PROV_ATTR_AGENT)))) for r in assoc] == ["node:lab-1"]
    assert {str(x) for r in assoc for x in r.get_attribute(PROV_ROLE)} == {"spime:maker"}
    used = {str(next(iter(r.get_attribute(PROV_ATTR_ENTITY)))) for r in doc.get_records()
            if r.get_type() == PROV_USAGE and r.get_attribute(PROV_ATTR_ACTIVITY) == {fab.identifier}}
    assert used == {f"rev:{second}"}
    generated = [str(next(iter(r.get_attribute(PROV_ATTR_ENTITY)))) for r in doc.get_records()
                 if r.get_type() == PROV_GENERATION and r.get_attribute(PROV_ATTR_ACTIVITY) == {fab.identifier}]
    [incarnation] = generated
    assert incarnation.startswith("inc:") and incarnation != f"inc:{job_id}"
    kinds = {(str(next(iter(r.get_attribute(PROV_ATTR_GENERATED_ENTITY)))), str(next(iter(r.get_attribute(PROV_ATTR_USED_ENTITY))))):
             {str(t) for t in r.get_attribute(PROV_TYPE)} for r in doc.get_records() if r.get_type() == PROV_DERIVATION}
    assert kinds[(f"rev:{second}", f"rev:{first}")] == {"prov:Revision"}
    agents = {str(a.identifier): {str(t) for t in a.get_asserted_types()} for a in doc.get_records()
              if a.get_type().localpart == "Agent"}
    assert agents["licensor:Test_Licensor"] == {"spime:Licensor"} and agents["node:lab-1"] == {"prov:Organization"}
    remix = exported(hub, "cube-xl", records_pb2.EXPORT_FORMAT_PROV_JSON)[1]
    remixed = ProvDocument.deserialize(content=remix.decode(), format="json")
    types = {str(t) for r in remixed.get_records() if r.get_type() == PROV_DERIVATION
             and r.get_attribute(PROV_ATTR_GENERATED_ENTITY) == {remixed.valid_qualified_name(f"rev:{fork}")}
             for t in r.get_attribute(PROV_TYPE)}
    assert types == {"spime:Remix"}
    okh = tomllib.loads(exported(hub, "cube-xl", records_pb2.EXPORT_FORMAT_OKH)[1].decode())
    jsonschema.Draft7Validator(SCHEMA).validate(okh)
    assert okh["forkOf"] == [f"https://spimeforge.org/designs/cube/revisions/{second}"]
    assert okh["part"][0]["source"] == ["calibration-cube.scad"] and okh["source"] == ["calibration-cube.scad"]
    agent.close()


def _revision(manifest: str, reports: tuple[PrintabilityRecord, ...] = ()) -> Revision:
    return Revision(id="a" * 64, design="cube", parent_ids=(), manifest_toml=manifest, files=(), author="alice",
                    created_at="2026-12-01T00:00:00Z", message="m", kind=RevisionKind.PUSH, reports=reports)


def test_okh_manifest_validates_with_outer_dimensions() -> None:
    design = Design("cube", "Cube", "", "CC-BY-4.0", "a" * 64, ("alice",), (), (), "", "", 1)
    report = PrintabilityRecord("calibration-cube.stl", True, {"ok": True, "extents_mm": [20.0, 20.0, 19.5]})
    okh = tomllib.loads(exports.okh_manifest(design, _revision(cube_manifest(), (report,))).decode())
    jsonschema.Draft7Validator(SCHEMA).validate(okh)
    assert okh["outer-dimensions"] == {"openSCAD": "cube(size = [20, 20, 19.5])", "unit": "mm"}
    assert okh["part"][0]["outer-dimensions"] == okh["outer-dimensions"]
    old = dict(okh, okhv="2.4", repo="urn:spimeforge:design:cube")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(old)
