#!/usr/bin/env bash
# The orchestrator on the team's H200 (no docker there): runtime bare, nvidia vendor, a generated set.
# Generates N images (default 10,000), runs host_configs/h200_bare.yaml (pytorch and inductor, fp16,
# bs 256), prints the results and environment tables, and writes the stored run as JSON to $DEST.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
DEST=${DEST:-results}
mkdir -p "$DEST"
if [ ! -d .cache/h200_data/val ]; then
  python3 -m runner_in_container.data.generate .cache/h200_data --images "$N" --layout imagefolder \
    --workers "$(nproc)"
fi
status=0
python3 -m orchestrator run --cluster host_configs/h200_bare.yaml || status=$?
run_id=$(python3 -c "from orchestrator.store import Store; print(Store('results/h200.sqlite').runs()[-1]['run_id'])")
python3 -m orchestrator report "$run_id" --store results/h200.sqlite --format json > "$DEST/h200_run.json"
python3 -m orchestrator report "$run_id" --store results/h200.sqlite --format md > "$DEST/h200_run.md"
exit $status
