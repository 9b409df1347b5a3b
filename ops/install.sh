#!/usr/bin/env bash
# Install everything Spimeforge needs on Debian 12 (bookworm) with Python 3.11, as root:
# the system programs (PostgreSQL, PrusaSlicer, OpenSCAD, admesh) and a virtual
# environment in .venv with the project and its test tools.
# Usage: bash ops/install.sh            # idempotent; safe to run again
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  python3 python3-venv python3-dev gcc
  postgresql postgresql-client
  prusa-slicer openscad admesh
  rsync
  xvfb xauth
  systemd zsh openssl
  bubblewrap
)

missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c ops/constraints.txt -e ".[test]"
echo "installed: $(.venv/bin/python -c 'import sys; print(sys.version.split()[0])') in .venv" >&2
