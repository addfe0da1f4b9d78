#!/bin/bash
# rn50bench: the batch script of every Slurm job the orchestrator submits (orchestrator/launchers/slurm.py).
#
# This file is constant. Everything job-specific arrives as arguments (sbatch passes the words after the
# script name to it), so no value from a cluster file is ever read as shell text:
#
#   slurm_job.sh [--device-token T --device-from docker|visible]
#                [--image TAG --context TAR [--label KEY=VALUE]... [--no-network]] [--container NAME]
#                -- COMMAND...
#
# --device-token  COMMAND names the device as T; it is replaced by the device Slurm allocated: the node's
#                 index from SLURM_JOB_GPUS (docker: the engine sees every device) or the first index the
#                 job sees in CUDA_VISIBLE_DEVICES / GPU_DEVICE_ORDINAL / ROCR_VISIBLE_DEVICES (visible).
# --image         docker image COMMAND runs; built from the build-context tar TAR when the node lacks it.
# --no-network    that build runs without a network (an image stack that fetches nothing).
# --container     name of the container COMMAND starts; removed when Slurm stops the job (time limit,
#                 scancel), since a killed docker client leaves its container running.
#
# The first line of output says where the job runs; the orchestrator reads it from the job's output file.
set -u

token='' from='' image='' context='' container=''
labels=() network=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device-token) token=$2; shift 2 ;;
    --device-from) from=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --context) context=$2; shift 2 ;;
    --label) labels+=(--label "$2"); shift 2 ;;
    --no-network) network=(--network none); shift ;;
    --container) container=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "rn50bench-slurm: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ $# -eq 0 ]; then echo "rn50bench-slurm: no command after --" >&2; exit 2; fi

first() { local list=${1:-}; echo "${list%%,*}"; }
visible=$(first "${CUDA_VISIBLE_DEVICES:-${GPU_DEVICE_ORDINAL:-${ROCR_VISIBLE_DEVICES:-}}}")
case "$from" in
  docker) device=$(first "${SLURM_JOB_GPUS:-${SLURM_STEP_GPUS:-}}") ;;
  *) device=$visible ;;
esac
echo "rn50bench-slurm: job=${SLURM_JOB_ID:-none} node=$(hostname) device=${device:-none} visible=${visible:-none}"

if [ -n "$token" ]; then
  case "$device" in
    '' | *[!0-9]*)
      echo "rn50bench-slurm: the job needs a device but Slurm allocated none it can name" \
        "(device-from $from: '${device}'); ask for one with gres" >&2
      exit 2 ;;
  esac
  args=()
  for arg in "$@"; do args+=("${arg//"$token"/$device}"); done
  set -- "${args[@]}"
fi

if [ -n "$image" ] && ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "rn50bench-slurm: building $image on $(hostname)"
  docker build --force-rm ${labels[@]+"${labels[@]}"} ${network[@]+"${network[@]}"} -t "$image" - <"$context" \
    || exit 125
fi

if [ -z "$container" ]; then exec "$@"; fi
docker rm --force "$container" >/dev/null 2>&1  # an earlier attempt's leftover
"$@" &
child=$!
trap 'docker rm --force "$container" >/dev/null 2>&1; kill -TERM "$child" 2>/dev/null' TERM INT
while :; do
  wait "$child"
  status=$?
  kill -0 "$child" 2>/dev/null || break
done
exit "$status"
