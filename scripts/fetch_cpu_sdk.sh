#!/usr/bin/env bash
# Put the CPU image's optional onnxruntime wheel into an SDK folder (default .cache/sdk/cpu). Idempotent.
# The build checks the file against the sha256 declared in vendors/cpu.py, so a wrong file never builds.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.cache/sdk/cpu}
py=${PYTHON:-.venv/bin/python}
name=$("$py" -c "from vendors.cpu import ONNXRUNTIME_WHEEL as w; print(w.name)")
[ -f "$dir/$name" ] && exit 0
mkdir -p "$dir"
version=$(echo "$name" | cut -d- -f2)
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux_2_28_x86_64 -d "$dir" "onnxruntime==$version" 2>&1 | grep -v '^WARNING' || true
[ -f "$dir/$name" ] || { echo "setup: could not download $name into $dir" >&2; exit 1; }
