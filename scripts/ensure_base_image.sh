#!/usr/bin/env bash
# Make the local Debian base image from nothing (no registry is reachable). Idempotent.
set -euo pipefail
tag=${1:-local/debian:bookworm}
suite=${SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$tag" >/dev/null 2>&1; then exit 0; fi
rootfs=$(mktemp -d /var/tmp/rn50bench-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "setup: debootstrap $suite -> $tag (about a minute)" >&2
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/dev/null
tar -C "$rootfs" -c . | docker import - "$tag" >/dev/null
