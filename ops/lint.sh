#!/usr/bin/env bash
# Static checks: ruff (style, imports), mypy --strict on the product packages, and
# the generated gRPC code against its .proto sources. Run after ops/install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/mypy hub node_agent slicer_bridge
.venv/bin/python ops/gen_protos.py --check
