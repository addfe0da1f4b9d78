#!/usr/bin/env bash
# Create .venv with the host side, the runner's dependencies and the test tools. Idempotent.
set -euo pipefail
venv=${VENV:-.venv}
stamp="$venv/.installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then exit 0; fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# torch/torchvision pinned to the builds that lie on this kind of machine's disk.
"$venv/bin/pip" install -q "torch==2.14.1" "torchvision==0.29.1"
"$venv/bin/pip" install -q -e ".[host,onnx,test]"
touch "$stamp"
