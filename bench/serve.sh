#!/usr/bin/env bash
# Webhook intake benchmark for `gantry serve`: Docker Hub hooks (the seed's body) POSTed
# on loopback by wrk for DURATION seconds, with the event log on (SQLite, WAL,
# synchronous=FULL: every 202 follows an fsynced commit).
#
# Two runs:
#   intake  — `--paused`: intake and the event log only (no worker), the sustained rate
#             the log can take;
#   worker  — the worker on as well: every event is resolved with a manifest HEAD against
#             a local gantry registry and deduplicated (one run starts, the rest are
#             duplicates), so intake competes with the worker for the log.
# Reports events/s, p50/p99 latency and the number of events in the log afterwards.
#
# Measured (2 shared cores, VM disk, release build, 30 s, 16 connections):
#   intake  4162 events/s  p50 3.77 ms  p99 7.74 ms  (124,929 events logged, no non-2xx)
#   worker  3677 events/s  p50 4.24 ms  p99 9.35 ms  (110,426 events logged, no non-2xx)
#
# usage: bench/serve.sh [DURATION] [CONNECTIONS]   (default 30 s, 16; needs wrk, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30}
CONNS=${2:-16}
WORK=$(mktemp -d /tmp/gantry-bench-serve.XXXXXX)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet
GANTRY=$PWD/target/release/gantry
BODY=$PWD/tests/fixtures/trigger/dockerhub-seed.json

# A registry holding the image the hooks name, for the worker run.
mkfifo "$WORK/reg.out"
$GANTRY registry serve --listen 127.0.0.1:0 --data-dir "$WORK/reg" >"$WORK/reg.out" 2>"$WORK/reg.log" &
read -r _ _ REG <"$WORK/reg.out"
python3 bench/mklayout.py "$WORK/layout" latest 1 4096 >/dev/null
$GANTRY image copy -q "oci:$WORK/layout:latest" "$REG/svendowideit/testhook:latest" >/dev/null

cat >"$WORK/gantry-serve.yaml" <<EOF
endpoints:
  - name: reg
    url: http://$REG
triggers:
  - name: hub
    source: dockerhub
    endpoint: reg
    token: s3cret
    image: 'svendowideit/.*'
    project: $PWD/tests/fixtures/trigger/project
    pipeline: check
    parameters: {out: $WORK/out}
    debounce: 3600
EOF

python3 - "$BODY" >"$WORK/post.lua" <<'EOF'
import json, sys
body = open(sys.argv[1]).read()
print('wrk.method = "POST"')
print('wrk.headers["Content-Type"] = "application/json"')
print('wrk.body = ' + json.dumps(body))
EOF

run() {
  local name=$1
  shift
  local state=$WORK/state-$name
  mkfifo "$WORK/$name.out"
  $GANTRY serve --config "$WORK/gantry-serve.yaml" --listen 127.0.0.1:0 --state-dir "$state" \
    --jobs-dir "$PWD/jobs" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  local pid=$!
  local addr
  read -r _ _ addr <"$WORK/$name.out"
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/post.lua" \
    "http://$addr/hooks/dockerhub/hub?token=s3cret" >"$WORK/$name.wrk"
  local events
  events=$($GANTRY events ls --state-dir "$state" --limit 100000000 | wc -l)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  python3 - "$name" "$WORK/$name.wrk" "$events" <<'EOF'
import re, sys
name, path, events = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
def pct(p):
    m = re.search(r"^\s+%s%%\s+(\S+)" % p, text, re.M)
    return m.group(1) if m else "n/a"
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
print(f"{name:8} {float(rps):10.0f} events/s   p50 {pct(50):>9}   p99 {pct(99):>9}   "
      f"events logged {events}   non-2xx {non2xx.group(1) if non2xx else 0}")
EOF
}

echo "gantry serve webhook intake: ${DURATION}s, $CONNS connections, wrk on loopback"
run intake --paused
run worker
