"""Regenerate the committed gRPC modules beside their .proto sources.

Usage: python ops/gen_protos.py [--check]

The output path equals the proto package (-Iproto, every *_out=proto), so the
generated imports (`from spimeforge.v1 import common_pb2`) need no rewriting.
With --check, generate into a temporary copy and exit 1 when anything differs.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = PROTO_ROOT / "spimeforge" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(proto_root: Path) -> None:
    """Run protoc for every .proto under proto_root/spimeforge/v1.

    Raises:
        RuntimeError: protoc reported an error.
    """
    include = Path(protoc.__file__).resolve().parent / "_proto"
    sources = sorted(str(p.relative_to(proto_root)) for p in (proto_root / "spimeforge" / "v1").glob("*.proto"))
    argv = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={proto_root}",
        f"--pyi_out={proto_root}",
        f"--grpc_python_out={proto_root}",
        *sources,
    ]
    if protoc.main(argv) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(argv)}")


def generated_files(package_dir: Path) -> list[str]:
    return sorted(p.name for p in package_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def check() -> list[str]:
    """Return the generated files that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "proto"
        shutil.copytree(PROTO_ROOT, copy, ignore=shutil.ignore_patterns(*(f"*{s}" for s in GENERATED_SUFFIXES), "__pycache__"))
        generate(copy)
        fresh_dir = copy / "spimeforge" / "v1"
        fresh, committed = generated_files(fresh_dir), generated_files(PACKAGE_DIR)
        drift = sorted(set(fresh) ^ set(committed))
        drift += [n for n in fresh if n in committed and not filecmp.cmp(fresh_dir / n, PACKAGE_DIR / n, shallow=False)]
        return drift


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when committed code drifts")
    args = parser.parse_args()
    if args.check:
        drift = check()
        if drift:
            print("generated code drifts from the .proto sources:", *drift, sep="\n  ", file=sys.stderr)
            print("run: python ops/gen_protos.py", file=sys.stderr)
            return 1
        return 0
    generate(PROTO_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
