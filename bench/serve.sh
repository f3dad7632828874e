#!/usr/bin/env bash
# Webhook intake benchmark for `gantry serve`: Docker Hub hooks (the seed's body) POSTed
# on loopback by wrk for DURATION seconds, with the event log on: SQLite (WAL,
# synchronous=FULL: every 202 follows an fsynced commit) and PostgreSQL (a cluster started
# here in a temp dir, default durability: synchronous_commit on, fsync on).
#
# Rows:
#   intake        — SQLite, `--paused`: intake and the event log only (no worker), the
#                   sustained rate the log can take;
#   worker        — SQLite, the worker on as well: every event is resolved with a manifest
#                   HEAD against a local gantry registry and deduplicated (one run starts,
#                   the rest are duplicates), so intake competes with the worker for the log;
#   pg-intake-1   — PostgreSQL, one replica, `--paused`;
#   pg-intake-2   — PostgreSQL, two replicas on the same database, `--paused`, wrk's
#                   connections split between them (events/s summed, the worse p50/p99).
# Reports events/s, p50/p99 latency and the number of events in the log afterwards.
#
# Measured (2 shared cores, VM disk, release build, 30 s, 16 connections):
#   intake  4162 events/s  p50 3.77 ms  p99 7.74 ms  (124,929 events logged, no non-2xx)
#   worker  3677 events/s  p50 4.24 ms  p99 9.35 ms  (110,426 events logged, no non-2xx)
# (rusqlite era, one connection.) After the move to sqlx (release build, 15 s, 16
# connections, the same machine idle, 2026-12-02):
#   intake       2058 events/s  p50 7.42 ms  p99 22.85 ms  (SQLite, one pool connection)
#   worker       1572 events/s  p50 9.36 ms  p99 17.90 ms
#   pg-intake-1  2707 events/s  p50 5.44 ms  p99 16.29 ms  (PostgreSQL 15, one replica)
#   pg-intake-2  2640 events/s  p50 5.59 ms  p99 17.25 ms  (two replicas, one database)
# With 4 SQLite pool connections the same run gave p99 208 ms (writers sleeping in SQLite's
# busy handler). SQLite intake was about half the rusqlite-era rate. With group commit
# (concurrent inserts share one transaction; release build, 15 s, 16 connections, idle):
#   intake       6987 events/s  p50 2.20 ms  p99  8.91 ms  (SQLite)
#   worker       2824 events/s  p50 3.85 ms  p99 15.04 ms
#   pg-intake-1  3617 events/s  p50 4.43 ms  p99  6.58 ms
#   pg-intake-2  3848 events/s  p50 4.07 ms  p99 10.01 ms
# Afternoon of the same day (a slower hour for this VM), the binary before and after this
# round's changes, minutes apart (GANTRY=old, then new):
#   intake       4442 / 4935 events/s   worker 2314 / 2254
#   pg-intake-1  2691 / 2872 events/s   pg-intake-2 3078 / 3199
#
# usage: bench/serve.sh [DURATION] [CONNECTIONS]   (default 30 s, 16; needs wrk, python3,
#        PostgreSQL server binaries and root for the PostgreSQL rows)
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
# GANTRY=path/to/gantry uses that binary instead of building the release one.
if [ -z "${GANTRY:-}" ]; then
  cargo build --release --quiet
  GANTRY=$PWD/target/release/gantry
fi
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

PG_BIN=${GANTRY_TEST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
PG_URL=
start_pg() {
  [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || { echo "no PostgreSQL binaries: skipping the pg rows" >&2; return 1; }
  chmod 755 "$WORK"
  mkdir "$WORK/pg"
  chown postgres "$WORK/pg"
  runuser -u postgres -- "$PG_BIN/initdb" -U postgres --auth=trust -E UTF8 -D "$WORK/pg/data" >/dev/null
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $WORK/pg" start >/dev/null
  PG_URL=postgres://postgres:bench@127.0.0.1:$port/postgres
}
stop_pg() {
  if [ -n "$PG_URL" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null || true
  fi
}
trap 'stop_pg; cleanup' EXIT

# run NAME REPLICAS DATABASE [serve args…]   (DATABASE empty: SQLite in the first state dir)
run() {
  local name=$1 replicas=$2 database=${3:-sqlite://$WORK/state-$1-1/events.db}
  shift 3
  local pids=() addrs=() i addr
  for i in $(seq 1 "$replicas"); do
    mkfifo "$WORK/$name-$i.out"
    $GANTRY serve --config "$WORK/gantry-serve.yaml" --listen 127.0.0.1:0 --state-dir "$WORK/state-$name-$i" \
      --jobs-dir "$PWD/jobs" --replica "r$i" --database "$database" "$@" >"$WORK/$name-$i.out" 2>"$WORK/$name-$i.log" &
    pids+=($!)
    read -r _ _ addr <"$WORK/$name-$i.out"
    addrs+=("$addr")
  done
  local wrks=() files=()
  for i in $(seq 1 "$replicas"); do
    wrk -t$(( replicas == 1 ? 2 : 1 )) -c$((CONNS / replicas)) -d"${DURATION}s" --latency -s "$WORK/post.lua" \
      "http://${addrs[$((i - 1))]}/hooks/dockerhub/hub?token=s3cret" >"$WORK/$name-$i.wrk" &
    wrks+=($!)
    files+=("$WORK/$name-$i.wrk")
  done
  wait "${wrks[@]}"
  local events
  events=$($GANTRY events ls --database "$database" --limit 100000000 | wc -l)
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  python3 - "$name" "$events" "${files[@]}" <<'EOF'
import re, sys
name, events, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
rps, p50, p99, non2xx = 0.0, 0.0, 0.0, 0
for path in paths:
    text = open(path).read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def pct(p):
        m = re.search(r"^\s+%s%%\s+(\S+)" % p, text, re.M)
        return ms(m.group(1)) if m else float("nan")
    p50, p99 = max(p50, pct(50)), max(p99, pct(99))
    n = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    non2xx += int(n.group(1)) if n else 0
print(f"{name:12} {rps:10.0f} events/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
      f"events logged {events}   non-2xx {non2xx}")
EOF
}

echo "gantry serve webhook intake: ${DURATION}s, $CONNS connections, wrk on loopback"
run intake 1 "" --paused
run worker 1 ""
if start_pg; then
  run pg-intake-1 1 "$PG_URL" --paused
  "$PG_BIN/psql" "$PG_URL" -qc "TRUNCATE events" >/dev/null
  run pg-intake-2 2 "$PG_URL" --paused
fi
