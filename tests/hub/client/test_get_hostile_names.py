"""``spime get`` never crashes on what a hub holds, and never writes outside its folder (issue 10 §3).

Revisions stored before the hub enforced portable names are written straight
into a real hub's store; ``spime get`` must either write them (where this system
can hold the name) or refuse them with a message and exit status 1.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from hub.client.cli import main
from hub.client.common import ClientError
from hub.client.download import plan_targets
from hub.domain import FileEntry, Revision, RevisionKind
from hub.store.designs import DesignMeta
from tests.hub.harness import InProcessHub, manifest_toml, now_z, sha
from tests.hub.refusal import refused


def _files(*names: str) -> list[dict[str, object]]:
    return [{"path": n, "sha256": f"{i:064x}", "size": 1} for i, n in enumerate(names)]


@pytest.mark.parametrize(
    ("names", "words"),
    [
        (["Part.stl", "part.STL"], "twice"),
        (["caf\u00e9.md", "cafe\u0301.md"], "twice"),
        (["docs", "docs/readme.md"], "both a file and a folder"),
        (["a/b", "A/B/c.stl"], "both a file and a folder"),
        ([".spime/base"], "spime"),
        (["SPIME.TOML"], "spime"),
        (["evil\u202egnp.stl"], "U+202E"),
        (["x\x1b[2J.stl"], "control"),
        (["a" * 300 + "\x00"], "NUL"),
        (["b/" * 200 + "../../x"], "'..'"),
    ],
)
def test_plan_refuses_names_that_collide_or_deceive(tmp_path: Path, names: list[str], words: str) -> None:
    with pytest.raises(ClientError, match="refusing") as info:
        plan_targets(tmp_path / "out", _files(*names))
    assert words in str(info.value)
    assert not (tmp_path / "out").exists()


def test_plan_accepts_legacy_names_this_system_can_hold(tmp_path: Path) -> None:
    plan = plan_targets(tmp_path / "out", _files("CON.stl", "trailing.", "what?.md"))
    assert [t.name for _, t in plan] == ["CON.stl", "trailing.", "what?.md"]


def _legacy(api: InProcessHub, slug: str, files: dict[str, bytes]) -> None:
    """Store a revision the way an older hub accepted it, bypassing today's path rules."""
    for data in files.values():
        api.upload("alice", data)
    entries = tuple(FileEntry(p, sha(b), len(b)) for p, b in sorted(files.items()))
    revision = Revision(id=sha(slug.encode()), design=slug, parent_ids=(), manifest_toml=manifest_toml(slug, files=()),
                        files=entries, author="alice", created_at=now_z(), message="legacy", kind=RevisionKind.PUSH)
    meta = DesignMeta(slug, "", "CC-BY-4.0", ("test",), ("CC-BY-4.0",))
    api.composed.store.designs._thd_create(slug, meta, revision, "alice", now_z())


def _get(api: InProcessHub, slug: str, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["get", slug, "-o", str(out), "--hub", api.address, "--token", api.tokens["carol"]])
    return code, capsys.readouterr().err


def test_get_writes_or_refuses_every_legacy_revision(any_api: InProcessHub, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    hub = any_api
    _legacy(hub, "old-names", {"CON.stl": b"con", "dir./x.stl": b"dot"})
    code, err = _get(hub, "old-names", tmp_path / "a", capsys)
    assert code == 0, err
    assert (tmp_path / "a" / "CON.stl").read_bytes() == b"con"
    _legacy(hub, "old-clash", {"part": b"file", "part/inner.stl": b"inner"})
    code, err = _get(hub, "old-clash", tmp_path / "b", capsys)
    assert code == 1 and "both a file and a folder" in err and "Traceback" not in err
    _legacy(hub, "old-long", {"é" * 200 + ".stl": b"long"})
    code, err = _get(hub, "old-long", tmp_path / "c", capsys)
    assert code == 1 and "longer than 255 bytes" in err and not (tmp_path / "c").exists()
    # portable rules aside, the system itself refuses a path over PATH_MAX bytes: a message, not a traceback
    _legacy(hub, "old-deep", {"/".join(["\U0001f4a5" * 63] * 16): b"deep"})
    code, err = _get(hub, "old-deep", tmp_path / "d", capsys)
    assert code == 1 and "cannot write" in err and "Traceback" not in err


def test_a_legacy_head_is_repaired_by_its_maintainers_only(any_api: InProcessHub) -> None:
    api = any_api
    _legacy(api, "old-head", {"CON.stl": b"con"})  # its manifest lists no files: refused today
    head = sha(b"old-head")
    api.upload("bob", b"fixed")
    manifest = manifest_toml("old-head", files=("part.stl",))
    refused(api, lambda: api.push("bob", "old-head", {"part.stl": b"fixed"}, manifest=manifest, parents=(head,),
                                  upload=False), grpc.StatusCode.FAILED_PRECONDITION, "LICENSE_CHANGE_NOT_MAINTAINER",
            "maintainer")
    fixed = api.push("alice", "old-head", {"part.stl": b"fixed"}, manifest=manifest, parents=(head,))
    assert not fixed.is_proposal and not fixed.unchanged
