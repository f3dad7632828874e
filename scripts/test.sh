#!/usr/bin/env bash
# The whole test suite, set-up included. On a fresh machine it installs and starts what the
# interop tests drive (skopeo, the Docker engine, Debian's docker-registry, busybox-static
# for local base images, openssl, graphviz, chromium, PostgreSQL) and a Python venv with moto's
# S3 server and ansible-core, then runs every test. `.ci/run` calls exactly this.
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
# gantry serve replicas are tested on a real PostgreSQL (initdb/pg_ctl in a temp dir per test run).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
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

# moto's S3 server (the registry's S3 driver) and ansible-core (the Ansible executor and the
# interpreter's differential tests) live in one venv outside the work tree, made once.
venv="${GANTRY_TEST_VENV:-$HOME/.cache/gantry-test/venv}"
if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/ansible-playbook" ]; then
  echo "== creating $venv (moto[server], ansible-core 2.16)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5,<6' 'ansible-core>=2.16,<2.17'
fi
export GANTRY_TEST_VENV="$venv"
GANTRY_TEST_PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
export GANTRY_TEST_PG_BIN

echo "== layering: no module imports a module that imports it"
python3 scripts/check-layering.py

# Most integration tests wait on processes and sockets (dockerd, skopeo, docker-registry,
# PostgreSQL, moto, chromium, ansible-playbook) rather than burn CPU: four test threads
# instead of one per core (2 on CI) cut the integration binary's wall time (332 s vs 395 s
# on a loaded 2-core machine). RUST_TEST_THREADS set by the caller wins.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

echo "== cargo test (RUST_TEST_THREADS=$RUST_TEST_THREADS)"
exec cargo test --all-targets "$@"
