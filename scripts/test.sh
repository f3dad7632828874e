#!/usr/bin/env bash
# The whole test suite, set-up included. On a fresh machine it installs and starts what the
# interop tests drive (skopeo, the Docker engine, Debian's docker-registry, busybox-static
# for local base images, openssl, graphviz, chromium), then runs every test. `.ci/run` calls exactly this.
#
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v tar >/dev/null 2>&1 || need+=(tar)
# gantry serve's executions page is tested in headless Chromium.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Docker engine: start dockerd when nothing answers on the socket.
if ! docker info >/dev/null 2>&1; then
  echo "== starting dockerd"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo sh -c 'nohup dockerd >/tmp/gantry-dockerd.log 2>&1 &'
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -20 /tmp/gantry-dockerd.log; exit 1; }
fi

echo "== cargo test"
exec cargo test --all-targets "$@"
