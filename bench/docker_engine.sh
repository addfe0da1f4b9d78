#!/usr/bin/env bash
# A docker engine from the carried bundle (scripts/fetch_docker_bundle.sh) on a host with no docker and no
# network (the team's H100), as root. Its data-root is a tmpfs (RAM: works whether or not / is an overlay),
# it makes no bridge and no iptables rules (--bridge=none: containers run with --network none or host), and
# everything it owns is its own (socket, exec-root, pidfile, containerd, config file, network namespace), so
# it also runs beside another engine (the tests run it beside the dev machine's dockerd). dockerd started
# with --bridge=none deletes a docker0 bridge it finds: in a network namespace of its own (unshare --net) it
# finds none, and another engine's bridge stays.
#   bench/docker_engine.sh start   unpack the bundle, mount the tmpfs, start dockerd (overlay2, else vfs),
#                                  wait until it answers, print its version and storage driver
#   bench/docker_engine.sh stop    stop dockerd (and its containerd), unmount everything under ENGINE_DIR
# Settings (environment):
#   BUNDLE        the bundle (default .cache/docker-bundle/docker-engine.tar.xz)
#   ENGINE_DIR    where it is unpacked and the engine keeps its state (default /var/lib/rn50bench-engine:
#                 not under /tmp, which may be mounted noexec)
#   DOCKER_SOCKET the engine's socket (default /var/run/docker.sock: the docker CLI and orchestrator find it)
#   DATA_SIZE     the tmpfs data-root's size (default 48g)
#   START_TIMEOUT seconds to wait for the engine to answer (default 90)
# The docker CLI is ENGINE_DIR/docker-engine/bin/docker: put that folder first on PATH (and set
# DOCKER_HOST=unix://DOCKER_SOCKET for another socket) before running the orchestrator.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-.cache/docker-bundle/docker-engine.tar.xz}
ENGINE_DIR=${ENGINE_DIR:-/var/lib/rn50bench-engine}
DOCKER_SOCKET=${DOCKER_SOCKET:-/var/run/docker.sock}
DATA_SIZE=${DATA_SIZE:-48g}
START_TIMEOUT=${START_TIMEOUT:-90}
bin=$ENGINE_DIR/docker-engine/bin
data_root=$ENGINE_DIR/data
exec_root=$ENGINE_DIR/exec
pidfile=$ENGINE_DIR/dockerd.pid
log=$ENGINE_DIR/dockerd.log

say() { echo "engine: $*"; }
fail() { echo "engine: $*" >&2; exit 1; }
docker_cli() { "$bin/docker" -H "unix://$DOCKER_SOCKET" "$@"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Wait until the process of pidfile $1 has exited, at most $2 seconds; false if it has not.
wait_gone() {
  local deadline=$((SECONDS + $2))
  while alive "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

unpack() {
  [ -f "$BUNDLE" ] || fail "no bundle $BUNDLE (make it with scripts/fetch_docker_bundle.sh)"
  mkdir -p "$ENGINE_DIR"
  rm -rf "$ENGINE_DIR/docker-engine"
  if command -v xz >/dev/null; then
    tar -C "$ENGINE_DIR" -xJf "$BUNDLE"
  else  # a minimal host may lack xz: Python's lzma reads it
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="tar")' \
      "$BUNDLE" "$ENGINE_DIR"
  fi
  say "$(tr '\n' ',' <"$ENGINE_DIR/docker-engine/VERSIONS" | sed 's/,$//; s/,/, /g')"
}

# Start dockerd with storage driver $1; true once it answers, false if it exits first.
start_dockerd() {
  rm -f "$pidfile"
  # its own config file: never /etc/docker/daemon.json, which belongs to any other engine on the host
  echo '{}' >"$ENGINE_DIR/daemon.json"
  setsid unshare --net "$bin/dockerd" --config-file "$ENGINE_DIR/daemon.json" -H "unix://$DOCKER_SOCKET" \
    --data-root "$data_root" --exec-root "$exec_root" --pidfile "$pidfile" --storage-driver "$1" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --userland-proxy=false >>"$log" 2>&1 </dev/null &
  local pid=$! deadline=$((SECONDS + START_TIMEOUT))
  until docker_cli info >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$SECONDS" -lt "$deadline" ] || { kill "$pid"; fail "dockerd did not answer in ${START_TIMEOUT}s; see $log"; }
    sleep 0.2
  done
}

start() {
  [ "$(id -u)" = 0 ] || fail "must run as root"
  ! alive "$pidfile" || fail "already running (pid $(cat "$pidfile")); stop it first"
  # dockerd 20.10 uses a running system containerd instead of its own: refuse rather than share one
  [ ! -S /run/containerd/containerd.sock ] || fail "a system containerd runs (/run/containerd/containerd.sock)"
  unpack
  ! docker_cli version >/dev/null 2>&1 || fail "another engine answers on $DOCKER_SOCKET; pick another DOCKER_SOCKET"
  mkdir -p "$data_root" "$exec_root"
  local where="already mounted: $(findmnt -no FSTYPE "$data_root" 2>/dev/null || echo '?')"
  if ! mountpoint -q "$data_root"; then
    mount -t tmpfs -o "size=$DATA_SIZE,mode=0711" rn50bench-engine "$data_root"
    where="tmpfs $DATA_SIZE"
  fi
  : >"$log"
  local driver=overlay2
  if ! start_dockerd overlay2; then
    local why
    why=$(grep -E 'level=(error|fatal)|failed to start' "$log" | sed 's/^time="[^"]*" //' | tr '\n' ' ')
    say "overlay2 failed (${why:-see $log}); falling back to vfs (every layer a full copy)"
    driver=vfs
    start_dockerd vfs || fail "dockerd exited with vfs too; see $log"
  fi
  say "dockerd pid $(cat "$pidfile") on $DOCKER_SOCKET, data-root $data_root ($where), log $log"
  docker_cli version
  say "storage driver $(docker_cli info --format '{{.Driver}}') (asked: $driver)"
}

stop() {
  if alive "$pidfile"; then
    kill "$(cat "$pidfile")"
    wait_gone "$pidfile" 60 || { say "dockerd did not stop in 60s: killing it"; kill -9 "$(cat "$pidfile")"; }
  fi
  # a containerd left by a killed dockerd
  local cpid=$exec_root/containerd/containerd.pid
  if alive "$cpid"; then kill "$(cat "$cpid")"; wait_gone "$cpid" 20 || kill -9 "$(cat "$cpid")"; fi
  # every mount under ENGINE_DIR (container layers, netns files, the tmpfs), deepest first
  awk -v dir="$ENGINE_DIR/" 'index($2, dir) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  rm -rf "$exec_root" "$data_root" "$pidfile"
  say "stopped; nothing mounted under $ENGINE_DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) fail "usage: $0 start|stop" ;;
esac
