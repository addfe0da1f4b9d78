#!/usr/bin/env bash
# Pack this machine's Debian docker engine into one file that starts on a host with no docker (the team's
# H100: Ubuntu 24.04, no network): .cache/docker-bundle/docker-engine.tar.xz (bench/docker_engine.sh starts it).
#
# The binaries come from the installed Debian packages docker.io (dockerd, docker, docker-proxy,
# docker-init), containerd (containerd, containerd-shim-runc-v2) and runc, with every shared library they
# link beyond glibc (ldd). In the tar, docker-engine/:
#   bin/       what dockerd runs by name (PATH): the binaries that need only glibc, and for those that need
#              more (dockerd, runc) a wrapper that sets LD_LIBRARY_PATH to lib/ and runs libexec/<name>
#   libexec/   the binaries the wrappers run
#   lib/       the libraries beyond glibc
#   VERSIONS   the Debian packages and versions packed
# Idempotent: an existing bundle of the same package versions is kept; a rebuild of the same packages gives
# the same bytes (fixed owners, order and mtimes). Prints its size and sha256.
#   scripts/fetch_docker_bundle.sh [OUT_DIR]     (default .cache/docker-bundle)
#   scripts/fetch_docker_bundle.sh --libs BIN... (print the libraries beyond glibc that BINs need, one a line)
set -euo pipefail

#: glibc's own libraries: every Linux host has them, so they are never packed
GLIBC='^(linux-vdso|ld-linux[^ ]*|libc|libpthread|libdl|libm|librt|libresolv|libutil|libanl|libnsl)\.so'

# The absolute paths of the libraries beyond glibc that the binaries link (ldd gives the whole closure).
non_glibc_libs() {
  local bin out
  for bin in "$@"; do
    out=$(ldd "$bin" 2>&1) || { grep -q 'not a dynamic executable' <<<"$out" && continue; echo "$out" >&2; return 1; }
    if grep -q '=> not found' <<<"$out"; then
      echo "bundle: $bin needs a library this machine lacks: $(grep '=> not found' <<<"$out" | head -1)" >&2
      return 1
    fi
    awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' <<<"$out" | grep -Ev "$GLIBC" | awk '{print $2}'
  done | sort -u
}

if [ "${1:-}" = "--libs" ]; then
  shift
  non_glibc_libs "$@"
  exit
fi

cd "$(dirname "$0")/.."
out_dir=${1:-.cache/docker-bundle}
bundle=$out_dir/docker-engine.tar.xz
#: package -> the binaries taken from it (found in the package's own file list)
declare -A TAKE=(
  [docker.io]="dockerd docker docker-proxy docker-init"
  [containerd]="containerd containerd-shim-runc-v2"
  [runc]="runc"
)

versions=$(for pkg in docker.io containerd runc; do
  dpkg-query -W -f '${Package} ${Version}\n' "$pkg" 2>/dev/null \
    || { echo "bundle: Debian package $pkg is not installed (apt-get install $pkg)" >&2; exit 1; }
done)

show() { echo "bundle: $bundle $(stat -c %s "$bundle") bytes, sha256 $(sha256sum "$bundle" | cut -d' ' -f1)"; }
if [ -f "$bundle" ] && [ "$(cat "$out_dir/VERSIONS" 2>/dev/null)" = "$versions" ]; then
  show
  exit 0
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/docker-bundle.XXXXXX")
trap 'rm -rf "$stage" "$bundle.part"' EXIT
root=$stage/docker-engine
mkdir -p "$root/bin" "$root/libexec" "$root/lib"
for pkg in "${!TAKE[@]}"; do
  for name in ${TAKE[$pkg]}; do
    path=$(dpkg -L "$pkg" | grep -E "/s?bin/$name\$" | head -1)
    [ -n "$path" ] || { echo "bundle: package $pkg has no $name" >&2; exit 1; }
    real=$(readlink -f "$path")  # docker-init is a link to tini-static
    if [ -z "$(non_glibc_libs "$real")" ]; then
      cp "$real" "$root/bin/$name"
    else
      cp "$real" "$root/libexec/$name"
      cp -L $(non_glibc_libs "$real") "$root/lib/"
      cat >"$root/bin/$name" <<EOF
#!/bin/sh
# $name needs libraries beyond glibc: they are in ../lib (its children inherit both variables)
here=\$(dirname "\$(readlink -f "\$0")")
export LD_LIBRARY_PATH="\$here/../lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="\$here:\$PATH"
exec "\$here/../libexec/$name" "\$@"
EOF
    fi
    chmod 755 "$root/bin/$name"
  done
done
echo "$versions" >"$root/VERSIONS"
mkdir -p "$out_dir"
# the x86 filter makes it 3% smaller; xz and Python's lzma both read it
tar -C "$stage" --owner=0 --group=0 --sort=name --mtime=@0 -cf - docker-engine \
  | xz --x86 --lzma2=preset=9e -T1 >"$bundle.part"
mv "$bundle.part" "$bundle"
echo "$versions" >"$out_dir/VERSIONS"
du -sh "$root"/* | sed 's/^/bundle: unpacked /'
show
