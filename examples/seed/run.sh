#!/usr/bin/env bash
# The seed scenario end to end, on one machine, without Docker:
#
#   change 1 (examples/seed/base) builds the base image example/base;
#   change 2 (examples/seed/app) builds example/app FROM example/base — tested against
#   change 1's *speculative* base image, found through change 1's build records in
#   gantry's intermediate registry;
#   check both, gate both (upload under change_<N>_latest to a local publication
#   registry standing in for Docker Hub), promote both (retag the tested manifests).
#
# usage: examples/seed/run.sh   (the `gantry` on PATH, else target/release/gantry, built if
#        needed; GANTRY=/path/to/gantry chooses another)
set -euo pipefail
cd "$(dirname "$0")/../.."
GANTRY=${GANTRY:-$(command -v gantry || echo target/release/gantry)}
# The daemonless builder: no Docker engine needed (GANTRY_BUILDER=docker to use one).
export GANTRY_BUILDER=${GANTRY_BUILDER:-native}
[ -x "$GANTRY" ] || cargo build --release --quiet
WORK=$(mktemp -d /tmp/gantry-seed.XXXXXX)
cleanup() {
  [ -n "${PUB_PID:-}" ] && kill "$PUB_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The publication registry (the stand-in for Docker Hub).
"$GANTRY" registry serve --listen 127.0.0.1:0 --data-dir "$WORK/publication" >"$WORK/pub.out" 2>"$WORK/pub.log" &
PUB_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/pub.out" ] && break; sleep 0.05; done
PUB=$(sed -n 's/^listening on //p' "$WORK/pub.out")
echo "publication registry (stand-in for docker.io): $PUB"

run() {
  echo
  echo "== gantry run $*"
  "$GANTRY" run "$@" --state-dir "$WORK/state" --publish-to "docker.io=$PUB"
}

run examples/seed/base --pipeline check --change 1
run examples/seed/app --pipeline check --change 2 --ahead base:1
run examples/seed/base --pipeline gate --change 1
run examples/seed/app --pipeline gate --change 2 --ahead base:1
run examples/seed/base --pipeline promote --change 1
run examples/seed/app --pipeline promote --change 2

echo
echo "== published images"
for repo in example/base example/app; do
  "$GANTRY" image ls --long "$PUB/$repo" | sed "s|^|$repo:|"
done
