#!/usr/bin/env bash
# Create the venv $VENV (default .venv) for one use; idempotent, one line per step.
#   host: the control side only (`make run`): rn50bench[host], no torch (the runner runs in the image)
#   test: host plus torch/torchvision (the runner's tests run it here), onnx and the test tools (`make test`)
set -euo pipefail
venv=${VENV:-.venv}
use=${1:-host}
case "$use" in
  host) stamp="$venv/.installed-host" extras="host" ;;
  test) stamp="$venv/.installed" extras="host,onnx,test" ;;
  *) echo "usage: $0 host|test" >&2; exit 2 ;;
esac
fresh() { [ -f "$1" ] && [ "$1" -nt pyproject.toml ]; }
fresh "$stamp" && exit 0
[ "$use" = host ] && fresh "$venv/.installed" && exit 0  # a test venv holds the host side
step() { echo "setup_venv ($use): $*"; }
if [ ! -x "$venv/bin/python" ]; then
  step "creating $venv"
  python3 -m venv "$venv"
fi
step "upgrading pip"
"$venv/bin/pip" install -q --upgrade pip
if [ "$use" = test ]; then
  # pinned to the builds that lie on this kind of machine's disk
  step "installing torch and torchvision (about 2 GB on a first install: minutes)"
  "$venv/bin/pip" install --progress-bar off "torch==2.14.1" "torchvision==0.29.1"
fi
step "installing rn50bench[$extras] (editable)"
"$venv/bin/pip" install --progress-bar off -e ".[$extras]"
touch "$stamp"
step "done"
