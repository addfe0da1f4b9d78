#!/usr/bin/env bash
# A docker base image made from this machine's own environment, with no registry: `docker import` of a tar
# of ROOT (default /), so that a vendor template builds on the Python/torch stack the machine already has
# (the team's H100: /opt/torch/.venv with torch 2.11). python3 in the image is the host's (its folder first
# on PATH). LD_LIBRARY_PATH is not set: the driver is never baked in, the run mounts it.
#   bench/base_from_env.sh IMAGE_TAG
# Emptied (paths inside ROOT; each folder kept, empty, as a mount point): /proc /sys /dev /run /tmp /var/tmp,
#   docker's and containerd's state, /usr/local/nvidia (the driver), /root/.cache, apt's caches, and on ROOT=/
#   every other mount of a virtual filesystem (proc, tmpfs, cgroup...: a tmpfs data-root too).
# Left out whole: this repo (REPO), ENGINE_DIR (bench/docker_engine.sh) and EXCLUDE.
# Settings (environment):
#   ROOT       the tree to import (default /)
#   PYTHON     the interpreter, as a path inside ROOT (default: python3 on PATH); its folder comes first on PATH
#   SLIM       site-packages of PYTHON's environment a ResNet50 benchmark never imports, left out (each
#              NAME drops NAME and NAME[-_.]*, e.g. its dist-info); SLIM=none keeps them all
#   EXCLUDE    more paths inside ROOT to leave out, space-separated (e.g. the run's output folder)
#   REPO, ENGINE_DIR  defaults: this repo, /var/lib/rn50bench-engine
# Prints what it leaves out, the image's size and the seconds taken.
set -euo pipefail
tag=${1:?usage: bench/base_from_env.sh IMAGE_TAG}
ROOT=${ROOT:-/}
root=${ROOT%/}  # "" for /
PYTHON=${PYTHON:-$(command -v python3)}
SLIM=${SLIM:-jax jaxlib cupy cupyx cupy_backends fastrlock transformers tokenizers torch_geometric botorch \
gpytorch pyro tensorflow tensorboard keras tf_keras flax optax orbax}
EXCLUDE=${EXCLUDE:-}
REPO=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}
ENGINE_DIR=${ENGINE_DIR:-/var/lib/rn50bench-engine}
start=$(date +%s.%N)

[ -d "${root:-/}" ] || { echo "base: ROOT $ROOT is not a folder" >&2; exit 1; }
[ -e "$root$PYTHON" ] || [ -L "$root$PYTHON" ] || { echo "base: no $PYTHON in $ROOT" >&2; exit 1; }
python_dir=$(dirname "$PYTHON")

# kept as empty folders (mount points at run time)
empty=(/proc /sys /dev /run /tmp /var/tmp /var/lib/docker /var/lib/containerd /usr/local/nvidia /root/.cache
  /var/cache/apt /var/lib/apt/lists)
# left out whole
read -r -a drop <<<"$REPO $ENGINE_DIR $EXCLUDE"
if [ -z "$root" ]; then
  # every other mount of a virtual filesystem (not / itself): /dev/shm, cgroups, a tmpfs data-root...
  virtual='^(proc|sysfs|devtmpfs|devpts|tmpfs|cgroup2?|securityfs|debugfs|tracefs|mqueue|hugetlbfs|pstore|bpf'
  virtual+='|fusectl|configfs|binfmt_misc|autofs|nsfs)$'
  empty+=($(awk -v virtual="$virtual" '$2 != "/" && $3 ~ virtual {print $2}' /proc/self/mounts))
  data_root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)
  [ -z "$data_root" ] || empty+=("$data_root")
fi
excludes=()
for path in "${empty[@]}"; do excludes+=("--exclude=.${path%/}/*"); done
for path in "${drop[@]}"; do excludes+=("--exclude=.${path%/}"); done
slimmed=()
if [ "$SLIM" != none ]; then
  for site in "$root$(dirname "$python_dir")"/lib/python3*/site-packages; do
    [ -d "$site" ] || continue
    for name in $SLIM; do
      for hit in "$site/$name" "$site/$name"[-_.]*; do
        [ -e "$hit" ] || continue
        slimmed+=("${hit##*/}")
        excludes+=("--exclude=.${hit#"$root"}")
      done
    done
  done
fi
echo "base: $ROOT -> $tag; python3 is $PYTHON"
echo "base: left out: ${drop[*]}; emptied: ${empty[*]}"
echo "base: site-packages left out (SLIM): ${slimmed[*]:-none}"

status=$(mktemp)
trap 'rm -f "$status"' EXIT
# tar exits 1 when a file changed while it read it (a live system's logs): only 2 is a failure
{ tar -C "${root:-/}" -cf - --anchored --numeric-owner --warning=no-file-changed --warning=no-file-removed \
    --warning=no-file-ignored "${excludes[@]}" . || echo $? >"$status"; } \
  | docker import --change "ENV PATH=$python_dir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    - "$tag" >/dev/null
tar_status=$(cat "$status")
if [ "${tar_status:-0}" -gt 1 ]; then echo "base: tar of $ROOT exited $tar_status" >&2; exit 1; fi
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "base: $tag $((size / 1000000)) MB in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
