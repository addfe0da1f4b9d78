#!/usr/bin/env bash
# Put the CPU image's optional wheels (onnxruntime, LoadGen) into an SDK folder (default .cache/sdk/cpu).
# Idempotent. The build checks each file against the sha256 declared in vendors/cpu.py, so a wrong file never
# builds.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.cache/sdk/cpu}
py=${PYTHON:-.venv/bin/python}
names=$("$py" -c "from vendors.cpu import VENDOR; print(' '.join(w.name for w in VENDOR.sdk_files))")
mkdir -p "$dir"
for name in $names; do
  [ -f "$dir/$name" ] && continue
  dist=$(echo "$name" | cut -d- -f1 | tr _ -)
  version=$(echo "$name" | cut -d- -f2)
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_x86_64 -d "$dir" "$dist==$version" 2>&1 | grep -v '^WARNING' || true
  [ -f "$dir/$name" ] || { echo "setup: could not download $name into $dir" >&2; exit 1; }
done
