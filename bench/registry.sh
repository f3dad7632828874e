#!/usr/bin/env bash
# Registry push/pull benchmark: gantry vs Debian's docker-registry (distribution 2.8) vs
# zuul-registry, side by side in one run, driven by skopeo.
#
# Shapes: (a) 4 layers x 64 MiB random data, (b) 200 layers x 16 KiB.
# For each server, shape and run: a fresh server on a fresh port and data directory (so
# skopeo's blob-info cache cannot turn pushes into mounts), one push, peak RSS read, one
# pull. Medians over RUNS, gantry/peer ratios (>1x = gantry faster), highest peak RSS.
#
# usage: bench/registry.sh [RUNS]   (default 3; needs skopeo, docker-registry, python3)
#        NO_ZUUL=1 skips zuul-registry (no pip install, shorter run)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=${1:-3}
WORK=$(mktemp -d /tmp/gantry-bench.XXXXXX)
export BENCH_LOG=$WORK/bench.log
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet
GANTRY=target/release/gantry

echo "preparing images in $WORK ..."
python3 bench/mklayout.py "$WORK/big" v1 4 $((64 << 20))
python3 bench/mklayout.py "$WORK/small" v1 200 $((16 << 10))

# zuul-registry in a venv, when pip can install it.
ZUUL=""
if [ -n "${NO_ZUUL:-}" ]; then
  echo "zuul-registry skipped (NO_ZUUL)"
elif [ -x "${ZUUL_REGISTRY_VENV:-/tmp/zr-venv}/bin/zuul-registry" ]; then
  ZUUL="${ZUUL_REGISTRY_VENV:-/tmp/zr-venv}/bin/zuul-registry"
elif python3 -m venv "$WORK/zr" >/dev/null 2>&1 && "$WORK/zr/bin/pip" install -q zuul-registry >/dev/null 2>&1; then
  ZUUL="$WORK/zr/bin/zuul-registry"
else
  echo "zuul-registry could not be installed with pip: skipped"
fi

start_server() { # name datadir -> sets PID HOST CREDS
  local name=$1 data=$2 port
  mkdir -p "$data"
  CREDS=()
  case $name in
    gantry)
      coproc GSRV { exec "$GANTRY" -q registry serve --listen 127.0.0.1:0 --data-dir "$data"; }
      read -r line <&"${GSRV[0]}"
      HOST=${line#listening on }
      PID=$GSRV_PID
      ;;
    docker-registry)
      port=$(free_port)
      cat >"$data.yml" <<YML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port}
YML
      docker-registry serve "$data.yml" >>"$BENCH_LOG" 2>&1 &
      PID=$!
      HOST=127.0.0.1:$port
      wait_http "http://$HOST/v2/"
      ;;
    zuul-registry)
      port=$(free_port)
      cat >"$data.yml" <<YML
registry:
  address: 127.0.0.1
  port: $port
  public-url: http://127.0.0.1:$port
  secret: $(python3 -c 'import secrets; print(secrets.token_hex(16))')
  users:
    - {name: zuul, pass: benchpass, access: write}
  storage: {driver: filesystem, root: $data}
YML
      "$ZUUL" -c "$data.yml" serve >>"$BENCH_LOG" 2>&1 &
      PID=$!
      HOST=127.0.0.1:$port
      CREDS=(--dest-creds zuul:benchpass)
      wait_http "http://$HOST/v2/"
      ;;
  esac
}

declare -A PUSH PULL RSS
servers=(gantry docker-registry)
[ -n "$ZUUL" ] && servers+=(zuul-registry)

max() {
  python3 -c 'import sys; print(max(sys.argv[1:], key=float))' "$@"
}

for shape in big small; do
  for s in "${servers[@]}"; do
    pushes=() pulls=() rss=()
    for i in $(seq 1 "$RUNS"); do
      start_server "$s" "$WORK/data-$s-$shape-$i"
      pushes+=("$(timed skopeo copy --preserve-digests --dest-tls-verify=false "${CREDS[@]}" \
        "oci:$WORK/$shape:v1" "docker://$HOST/bench/$shape:v1")")
      rss+=("$(peak_rss_mib "$PID")")
      src_creds=()
      [ ${#CREDS[@]} -gt 0 ] && src_creds=(--src-creds zuul:benchpass)
      rm -rf "$WORK/out"
      pulls+=("$(timed skopeo copy --preserve-digests --src-tls-verify=false "${src_creds[@]}" \
        "docker://$HOST/bench/$shape:v1" "oci:$WORK/out:v1")")
      kill "$PID" 2>/dev/null || true
      wait "$PID" 2>/dev/null || true
      rm -rf "$WORK/data-$s-$shape-$i"
    done
    PUSH[$s,$shape]=$(median "${pushes[@]}")
    PULL[$s,$shape]=$(median "${pulls[@]}")
    RSS[$s,$shape]=$(max "${rss[@]}")
    echo "$s $shape: push ${pushes[*]} | pull ${pulls[*]} | peak RSS ${rss[*]} MiB"
  done
done

echo
echo "== registry benchmark: medians of $RUNS runs, skopeo $(skopeo --version | awk '{print $3}')"
printf "%-16s %-22s %9s %9s %12s %12s %14s\n" server shape "push s" "pull s" "push ratio" "pull ratio" "peak RSS MiB"
for shape in big small; do
  label=$([ $shape = big ] && echo "4 x 64 MiB" || echo "200 x 16 KiB")
  for s in "${servers[@]}"; do
    pr="" lr=""
    if [ "$s" != gantry ]; then
      pr=$(ratio "${PUSH[gantry,$shape]}" "${PUSH[$s,$shape]}")
      lr=$(ratio "${PULL[gantry,$shape]}" "${PULL[$s,$shape]}")
    fi
    printf "%-16s %-22s %9s %9s %12s %12s %14s\n" "$s" "$label" "${PUSH[$s,$shape]}" "${PULL[$s,$shape]}" "$pr" "$lr" "${RSS[$s,$shape]}"
  done
done
echo "(ratio = peer time / gantry time: above 1x gantry is faster)"
