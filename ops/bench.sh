#!/usr/bin/env bash
# Run the benchmarks (not part of the default test run). Each prints its
# figures next to a named reference measured in the same run.
# Usage: bash ops/bench.sh [pytest args, e.g. -k push]
#   -k push      200 MB push vs raw loopback TCP and vs rsync to an rsync daemon (rsync: ops/install.sh)
#   -k abuse     "hub under abuse": honest read latency with hostile callers vs the idle hub
#   -k orders    orders routed/s (1,000 nodes, 10,000 designs) vs a bare claim query; record p99
#   -k record    the record p99 part alone
#   -k replicas  job created on replica B -> offer at an agent held by replica A (NOTIFY) vs same replica
#   -k agents    1,000 and 10,000 simulated node agents on one hub vs a bare grpc.aio bidi server
#                (memory per agent, offer latency, reconnect after all drop); SPIME_BENCH_AGENTS=1000 for one size
#   -k ops       metrics interceptor overhead; backup vs tar
#   -k serial, -k printability, -k slicing   see README.md
set -euo pipefail
cd "$(dirname "$0")/.."
bash ops/install.sh
# Printrun's printcore is the reference for the serial benchmark; its GUI
# dependencies (wxPython) are not needed for printcore, so install it bare.
.venv/bin/python -m pip install -q --no-deps "printrun==2.2.0" "psutil>=5"
exec .venv/bin/python -m pytest tests/benchmarks -s -p no:cacheprovider -o addopts="" -o timeout=3600 "$@"
