"""The committed gRPC modules equal what grpcio-tools generates from proto/ now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _gen_protos():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "ops" / "gen_protos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_does_not_drift() -> None:
    drift = _gen_protos().check()
    assert drift == [], f"regenerate with `.venv/bin/python ops/gen_protos.py`; drifted: {drift}"


def test_every_proto_has_its_generated_modules() -> None:
    package = ROOT / "proto" / "spimeforge" / "v1"
    for proto in package.glob("*.proto"):
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (package / f"{proto.stem}{suffix}").exists(), f"{proto.name}: {suffix} missing"
