#!/usr/bin/env bash
# Start dockerd in the background unless a docker engine already answers. Idempotent.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
command -v dockerd >/dev/null || { echo "setup: dockerd not installed (scripts/setup_system.sh)" >&2; exit 1; }
log=${DOCKERD_LOG:-/var/log/rn50bench-dockerd.log}
setsid dockerd >"$log" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "setup: dockerd did not come up; see $log" >&2
exit 1
