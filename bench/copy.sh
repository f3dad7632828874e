#!/usr/bin/env bash
# Registry-to-registry copy and promote: gantry image copy/promote vs skopeo, one run.
#
# (a) 4 layers x 64 MiB, (b) 200 layers x 16 KiB: copy from a source registry to a fresh
#     destination registry (new port and data dir per run, so neither tool can reuse
#     blobs or skopeo's blob-info cache).
# (c) promote of a 200-layer image: gantry image promote (GET+PUT+DELETE) vs skopeo copy
#     of the temporary tag to the final tag in the same repository; wall time and the
#     number of requests the registry saw.
#
# usage: bench/copy.sh [RUNS]   (default 5; needs skopeo and python3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=${1:-5}
WORK=$(mktemp -d /tmp/gantry-bench-copy.XXXXXX)
export BENCH_LOG=$WORK/bench.log
stop() { # datadir
  kill "$(cat "$1.pid")" 2>/dev/null || true
  rm -rf "$1"
}
cleanup() {
  [ -f "$PIDS" ] && kill $(cat "$PIDS") 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet
GANTRY=$PWD/target/release/gantry

PIDS=$WORK/pids
serve() { # datadir logfile -> prints host:port; the pid goes to DATADIR.pid and $PIDS
  "$GANTRY" registry serve --listen 127.0.0.1:0 --data-dir "$1" >"$1.out" 2>"$2" &
  echo $! >"$1.pid"
  echo $! >>"$PIDS"
  for _ in $(seq 1 200); do
    [ -s "$1.out" ] && break
    sleep 0.02
  done
  sed -n 's/^listening on //p' "$1.out"
}

echo "preparing images in $WORK ..."
python3 bench/mklayout.py "$WORK/big" v1 4 $((64 << 20))
python3 bench/mklayout.py "$WORK/small" v1 200 $((16 << 10))
SRC=$(serve "$WORK/src" "$WORK/src.log")
for shape in big small; do
  "$GANTRY" -q image copy "oci:$WORK/$shape:v1" "$SRC/bench/$shape:v1" >/dev/null
done

declare -A T
for shape in big small; do
  g=() s=()
  for i in $(seq 1 "$RUNS"); do
    DST=$(serve "$WORK/dst-g-$shape-$i" /dev/null)
    g+=("$(timed "$GANTRY" -q image copy "$SRC/bench/$shape:v1" "$DST/bench/$shape:v1")")
    stop "$WORK/dst-g-$shape-$i"
    DST=$(serve "$WORK/dst-s-$shape-$i" /dev/null)
    s+=("$(timed skopeo copy --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
      "docker://$SRC/bench/$shape:v1" "docker://$DST/bench/$shape:v1")")
    stop "$WORK/dst-s-$shape-$i"
  done
  T[gantry,$shape]=$(median "${g[@]}")
  T[skopeo,$shape]=$(median "${s[@]}")
  echo "copy $shape: gantry ${g[*]} | skopeo ${s[*]}"
done

# Promote: count what the source registry logs for each tool.
g=() s=() gr=0 sr=0
for i in $(seq 1 "$RUNS"); do
  "$GANTRY" -q image copy "$SRC/bench/small:v1" "$SRC/bench/promote:change_${i}_latest" >/dev/null
  before=$(grep -c ' request ' "$WORK/src.log" || true)
  g+=("$(timed "$GANTRY" -q image promote "$SRC/bench/promote" --tag latest --change "$i")")
  after=$(grep -c ' request ' "$WORK/src.log" || true)
  gr=$((after - before))
  "$GANTRY" -q image copy "$SRC/bench/small:v1" "$SRC/bench/promote:change_${i}_s" >/dev/null
  before=$(grep -c ' request ' "$WORK/src.log" || true)
  s+=("$(timed skopeo copy --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
    "docker://$SRC/bench/promote:change_${i}_s" "docker://$SRC/bench/promote:s")")
  after=$(grep -c ' request ' "$WORK/src.log" || true)
  sr=$((after - before))
done
T[gantry,promote]=$(median "${g[@]}")
T[skopeo,promote]=$(median "${s[@]}")
echo "promote: gantry ${g[*]} ($gr requests) | skopeo ${s[*]} ($sr requests)"

echo
echo "== copy benchmark: medians of $RUNS runs, skopeo $(skopeo --version | awk '{print $3}')"
printf "%-34s %10s %10s %10s\n" case "gantry s" "skopeo s" ratio
printf "%-34s %10s %10s %10s\n" "copy 4 x 64 MiB" "${T[gantry,big]}" "${T[skopeo,big]}" "$(ratio "${T[gantry,big]}" "${T[skopeo,big]}")"
printf "%-34s %10s %10s %10s\n" "copy 200 x 16 KiB" "${T[gantry,small]}" "${T[skopeo,small]}" "$(ratio "${T[gantry,small]}" "${T[skopeo,small]}")"
printf "%-34s %10s %10s %10s\n" "promote 200 layers" "${T[gantry,promote]}" "${T[skopeo,promote]}" "$(ratio "${T[gantry,promote]}" "${T[skopeo,promote]}")"
printf "%-34s %10s %10s\n" "promote requests at the registry" "$gr" "$sr"
echo "(ratio = skopeo time / gantry time: above 1x gantry is faster)"
