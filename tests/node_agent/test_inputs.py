"""Which artifacts a job needs: the path its offer takes and what an OpenSCAD file reads. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from node_agent.inputs import Model, model, read_by
from node_agent.messages import ArtifactRef, Offer


def _ref(path: str, kind: str) -> ArtifactRef:
    return ArtifactRef("0" * 64, 1, kind, path)


def _offer(artifacts: tuple[ArtifactRef, ...], parameters: Mapping[str, str]) -> Offer:
    return Offer(hub_seq=1, offer_id="o", job_id="j", design="d", revision_id="r", artifacts=artifacts,
                 parameters=parameters, material="PLA", printer_id="mk3", lease_epoch=1)


def test_a_job_renders_its_source_with_parameters_or_without_a_mesh_and_else_prints_its_first_mesh() -> None:
    lib, scad, a, b = _ref("a-lib.scad", "scad-include"), _ref("main.scad", "scad"), _ref("a.stl", "mesh"), _ref(
        "b.stl", "mesh")
    assert model(_offer((lib, scad, a, b), {"w": "3"})) == Model(scad, True)
    assert model(_offer((lib, scad, a, b), {})) == Model(a, False)
    assert model(_offer((lib, scad), {})) == Model(scad, True)
    assert model(_offer((b, a), {"w": "3"})) == Model(b, False)  # nothing to render: the mesh as published
    assert model(_offer((lib,), {"w": "3"})) is None  # a library is never rendered in place of the source
    assert model(_offer((_ref("x.scad", "file"),), {})) == Model(_ref("x.scad", "file"), True)  # by its name


def test_what_a_file_reads_resolves_from_its_own_folder_within_the_revision() -> None:
    artifacts = (_ref("src/main.scad", "scad"), _ref("src/lib/util.scad", "scad-include"), _ref("shared.scad", "file"),
                 _ref("src/peg.stl", "mesh"), _ref("src/h.dat", "file"), _ref("body.stl", "mesh"))
    source = ('use <lib/util.scad>\ninclude <../shared.scad>\nimport("peg.stl");\nsurface(file = "h.dat");\n'
              'import("/etc/passwd");\nimport(name);\nimport("missing.stl");\ninclude <peg.stl>\n'
              '// import("body.stl");\n')
    found = {ref.path: code for ref, code in read_by(artifacts[0], source, artifacts)}
    assert found == {"src/lib/util.scad": True, "shared.scad": True, "src/peg.stl": True, "src/h.dat": False}
