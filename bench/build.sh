#!/usr/bin/env bash
# Build+push benchmark: gantry's native builder vs `docker build` + `docker push` (classic
# builder) of the same COPY-only context to the same kind of registry; gantry's docker
# builder (bollard) is measured too.
#
# Context: 5,000 small files (1 KiB each, 50 directories) and 200 MiB of data (two 100 MiB
# files of random bytes); Dockerfile: FROM scratch + two COPYs.
# Every run gets a fresh gantry registry on 127.0.0.1:0 (so neither side can skip or mount
# blobs pushed by an earlier run) and docker builds with --no-cache, its image removed
# afterwards. Medians over RUNS; ratio = docker time / native time (>1x: native faster).
#
# usage: bench/build.sh [RUNS]   (default 3; needs docker and python3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=${1:-3}
WORK=$(mktemp -d /tmp/gantry-bench-build.XXXXXX)
export BENCH_LOG=$WORK/bench.log
export DOCKER_BUILDKIT=0
IMAGES=()
cleanup() {
  for i in "${IMAGES[@]}"; do docker rmi -f "$i" >/dev/null 2>&1 || true; done
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# GANTRY=path/to/gantry uses that binary instead of building the release one (to compare
# two gantry versions on the same day).
if [ -z "${GANTRY:-}" ]; then
  cargo build --release --quiet
  GANTRY=$PWD/target/release/gantry
fi

echo "preparing the context in $WORK/ctx ..."
python3 - "$WORK/ctx" <<'PY'
import os, sys, random
root = sys.argv[1]
rnd = random.Random(42)
for d in range(50):
    dd = os.path.join(root, "small", f"d{d:02}")
    os.makedirs(dd)
    for f in range(100):
        with open(os.path.join(dd, f"f{f:03}.txt"), "wb") as fh:
            fh.write(rnd.randbytes(512).hex().encode())  # 1 KiB of text
os.makedirs(os.path.join(root, "big"))
for i in range(2):
    with open(os.path.join(root, "big", f"blob{i}.bin"), "wb") as fh:
        for _ in range(100):
            fh.write(os.urandom(1 << 20))
with open(os.path.join(root, "Dockerfile"), "w") as fh:
    fh.write("FROM scratch\nCOPY small/ /small/\nCOPY big/ /big/\n")
PY

start_registry() {
  mkdir -p "$1"
  coproc GSRV { exec "$GANTRY" -q registry serve --listen 127.0.0.1:0 --data-dir "$1"; }
  read -r line <&"${GSRV[0]}"
  HOST=${line#listening on }
  PID=$GSRV_PID
}

stop_registry() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$1"
}

docker_build_push() { # tag
  docker build --no-cache -q -t "$1" "$WORK/ctx" && docker push "$1"
}

native=() docker_cli=() gantry_docker=()
for i in $(seq 1 "$RUNS"); do
  start_registry "$WORK/reg-n-$i"
  native+=("$(timed "$GANTRY" -q build "$WORK/ctx" --builder native --tag "$HOST/bench/native:v1")")
  digest1=$("$GANTRY" -q build "$WORK/ctx" --builder native --tag "$HOST/bench/again:v1")
  stop_registry "$WORK/reg-n-$i"

  start_registry "$WORK/reg-d-$i"
  IMAGES+=("$HOST/bench/docker:v1")
  docker_cli+=("$(timed docker_build_push "$HOST/bench/docker:v1")")
  docker rmi -f "$HOST/bench/docker:v1" >/dev/null 2>&1 || true
  stop_registry "$WORK/reg-d-$i"

  start_registry "$WORK/reg-g-$i"
  IMAGES+=("$HOST/bench/gdocker:v1")
  gantry_docker+=("$(timed "$GANTRY" -q build "$WORK/ctx" --builder docker --tag "$HOST/bench/gdocker:v1")")
  docker rmi -f "$HOST/bench/gdocker:v1" >/dev/null 2>&1 || true
  docker image prune -f >/dev/null 2>&1 || true
  stop_registry "$WORK/reg-g-$i"
  echo "run $i: native ${native[-1]}s, docker build+push ${docker_cli[-1]}s, gantry --builder docker ${gantry_docker[-1]}s"
done

N=$(median "${native[@]}")
D=$(median "${docker_cli[@]}")
G=$(median "${gantry_docker[@]}")
echo
echo "== build+push benchmark: 5,000 x 1 KiB files + 2 x 100 MiB, medians of $RUNS runs"
printf "%-34s %9s %10s\n" builder "seconds" "ratio"
printf "%-34s %9s %10s\n" "gantry build --builder native" "$N" ""
printf "%-34s %9s %10s\n" "docker build + docker push" "$D" "$(ratio "$N" "$D")"
printf "%-34s %9s %10s\n" "gantry build --builder docker" "$G" "$(ratio "$N" "$G")"
echo "(ratio = that time / native time: above 1x the native builder is faster)"
echo "native digest stable across registries: ${digest1##*@}"
