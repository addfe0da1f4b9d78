#!/usr/bin/env bash
# Install the Debian packages the orchestrator and its tests use. Idempotent: only missing packages are
# installed. The test fixtures start their own munged, MariaDB, Slurm and image registry daemons on private
# paths and ports, so system services of these packages, if any run, are left alone.
set -euo pipefail
packages=(docker.io openssh-server openssh-client debootstrap iproute2 ca-certificates chromium
  slurm-wlm slurmdbd munge mariadb-server docker-registry stress-ng)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
