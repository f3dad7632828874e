#!/usr/bin/env bash
# Registry push/pull benchmark: gantry vs Debian's docker-registry (distribution 2.8) vs
# zuul-registry, side by side in one run, driven by skopeo.
#
# Shapes: (a) 4 layers x 64 MiB random data, (b) 200 layers x 16 KiB on the filesystem;
# on S3 (moto's server, one for the whole run): (c) 4 x 16 MiB, (d) 50 x 16 KiB, gantry
# (--storage s3://) vs docker-registry's S3 driver on the same moto server.
# For each server, shape and run: a fresh server on a fresh port and data directory or
# bucket (so skopeo's blob-info cache cannot turn pushes into mounts), one push, peak RSS
# read, one pull. Medians over RUNS, gantry/peer ratios (>1x = gantry faster), highest
# peak RSS.
#
# usage: bench/registry.sh [RUNS]   (default 3; needs skopeo, docker-registry, python3,
#                                    moto_server for the S3 rows)
#        NO_ZUUL=1 skips zuul-registry (no pip install, shorter run)
#        NO_S3=1 skips the S3 rows; ONLY_S3=1 runs only them
#        MOTO_SERVER=PATH (default: $GANTRY_TEST_VENV or ~/.cache/gantry-test/venv bin/)
#        GANTRY=PATH uses that binary instead of a release build (a debug smoke run:
#        GANTRY=target/debug/gantry NO_ZUUL=1 ONLY_S3=1 bench/registry.sh 1)
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

if [ -z "${GANTRY:-}" ]; then
  cargo build --release --quiet
  GANTRY=target/release/gantry
fi

SHAPES=()
[ -z "${ONLY_S3:-}" ] && SHAPES+=(big small)
echo "preparing images in $WORK ..."
if [ -z "${ONLY_S3:-}" ]; then
  python3 bench/mklayout.py "$WORK/big" v1 4 $((64 << 20))
  python3 bench/mklayout.py "$WORK/small" v1 200 $((16 << 10))
fi

# moto's S3 server, one for the run; each server and run gets a fresh bucket.
MOTO=""
if [ -z "${NO_S3:-}" ]; then
  MOTO=${MOTO_SERVER:-${GANTRY_TEST_VENV:-$HOME/.cache/gantry-test/venv}/bin/moto_server}
  if [ -x "$MOTO" ]; then
    python3 bench/mklayout.py "$WORK/s3big" v1 4 $((16 << 20))
    python3 bench/mklayout.py "$WORK/s3small" v1 50 $((16 << 10))
    SHAPES+=(s3big s3small)
    env -u AWS_CA_BUNDLE "$MOTO" -p 0 >"$WORK/moto.log" 2>&1 &
    MOTO_PID=$!
    S3_ENDPOINT=""
    for _ in $(seq 1 200); do # it prints " * Running on http://127.0.0.1:PORT" once listening
      S3_ENDPOINT=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/moto.log" | head -1 || true)
      [ -n "$S3_ENDPOINT" ] && break
      kill -0 "$MOTO_PID" 2>/dev/null || { cat "$WORK/moto.log" >&2; exit 1; }
      sleep 0.05
    done
    [ -n "$S3_ENDPOINT" ] || { echo "moto_server did not start" >&2; exit 1; }
    S3_PORT=${S3_ENDPOINT##*:}
    echo "moto S3 server at $S3_ENDPOINT"
  else
    echo "moto_server not found at $MOTO: S3 rows skipped (scripts/test.sh installs it)"
    MOTO=""
  fi
fi

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

make_bucket() { # name
  curl -sf -X PUT "$S3_ENDPOINT/$1" -o /dev/null
}

start_server() { # name datadir -> sets PID HOST CREDS
  local name=$1 data=$2 port bucket
  mkdir -p "$data"
  CREDS=()
  case $name in
    gantry-s3)
      bucket=b$(basename "$data" | tr -c 'a-z0-9\n' '-' | tr -d '\n' | cut -c1-50)
      make_bucket "$bucket"
      coproc GSRV { exec env -u AWS_CA_BUNDLE AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
        AWS_REGION=us-east-1 AWS_ENDPOINT_URL="$S3_ENDPOINT" AWS_ALLOW_HTTP=true \
        "$GANTRY" -q registry serve --listen 127.0.0.1:0 --storage "s3://$bucket"; }
      read -r line <&"${GSRV[0]}"
      HOST=${line#listening on }
      PID=$GSRV_PID
      ;;
    docker-registry-s3)
      bucket=b$(basename "$data" | tr -c 'a-z0-9\n' '-' | tr -d '\n' | cut -c1-50)
      make_bucket "$bucket"
      port=$(free_port)
      cat >"$data.yml" <<YML
version: 0.1
log: {level: error}
storage:
  s3:
    regionendpoint: http://127.0.0.1:$S3_PORT
    bucket: $bucket
    accesskey: bench
    secretkey: bench
    region: us-east-1
    secure: false
    v4auth: true
  # Serve blobs itself, as gantry does (by default it redirects clients to S3).
  redirect: {disable: true}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port}
YML
      # Its S3 driver panics when AWS_CA_BUNDLE is set.
      env -u AWS_CA_BUNDLE docker-registry serve "$data.yml" >>"$BENCH_LOG" 2>&1 &
      PID=$!
      HOST=127.0.0.1:$port
      wait_http "http://$HOST/v2/"
      ;;
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
fs_servers=(gantry docker-registry)
[ -n "$ZUUL" ] && fs_servers+=(zuul-registry)
s3_servers=(gantry-s3 docker-registry-s3)
servers_for() { # shape
  case $1 in s3*) echo "${s3_servers[@]}" ;; *) echo "${fs_servers[@]}" ;; esac
}

max() {
  python3 -c 'import sys; print(max(sys.argv[1:], key=float))' "$@"
}

for shape in "${SHAPES[@]}"; do
  for s in $(servers_for "$shape"); do
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
      rm -rf "$WORK/data-$s-$shape-$i" "$WORK/data-$s-$shape-$i.yml"
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
for shape in "${SHAPES[@]}"; do
  case $shape in
    big) label="4 x 64 MiB" ;; small) label="200 x 16 KiB" ;;
    s3big) label="S3 4 x 16 MiB" ;; s3small) label="S3 50 x 16 KiB" ;;
  esac
  ours=$(servers_for "$shape" | awk '{print $1}')
  for s in $(servers_for "$shape"); do
    pr="" lr=""
    if [ "$s" != "$ours" ]; then
      pr=$(ratio "${PUSH[$ours,$shape]}" "${PUSH[$s,$shape]}")
      lr=$(ratio "${PULL[$ours,$shape]}" "${PULL[$s,$shape]}")
    fi
    printf "%-16s %-22s %9s %9s %12s %12s %14s\n" "$s" "$label" "${PUSH[$s,$shape]}" "${PULL[$s,$shape]}" "$pr" "$lr" "${RSS[$s,$shape]}"
  done
done
echo "(ratio = peer time / gantry time: above 1x gantry is faster)"
