#!/usr/bin/env bash
# gantry run benchmark:
#  (a) wall time of `gantry run --pipeline check` for change 2 of the seed example (with
#      change 1 ahead), daemonless builder, medians of RUNS;
#  (b) time-to-ready of a buildset registry: gantry's in-process one (as the
#      run-buildset-registry role reports it) vs starting Debian's docker-registry
#      process with a generated TLS certificate and htpasswd, as zuul-jobs does with a
#      registry container (here without the container start, which only adds to it);
#  (c) the seed scenario's check runs (change 1, then change 2 with change 1 ahead) with
#      the built-in interpreter vs real ansible-playbook (`--executor builtin|ansible`,
#      native roles reached over gantry's socket), wall time side by side. Ansible from
#      $GANTRY_ANSIBLE, else the test venv, else PATH; skipped when there is none.
#
# usage: bench/run.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=${1:-5}
WORK=$(mktemp -d /tmp/gantry-bench-run.XXXXXX)
export BENCH_LOG=$WORK/bench.log
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release --quiet
GANTRY=$PWD/target/release/gantry
export GANTRY_BUILDER=native

# (a) check pipeline of change 2 with change 1 ahead.
runs=() ready=()
for i in $(seq 1 "$RUNS"); do
  S=$WORK/state-$i
  "$GANTRY" -q run examples/seed/base --pipeline check --change 1 --state-dir "$S" >>"$BENCH_LOG" 2>&1
  runs+=("$(timed "$GANTRY" -q run examples/seed/app --pipeline check --change 2 --ahead base:1 --state-dir "$S")")
  # Every buildset registry of the run (change 1's and change 2's), not one at random.
  while read -r r; do ready+=("$r"); done < <(grep -ho 'ready in [0-9.]* ms' "$S"/builds/*/job-output.txt | awk '{print $3}')
done

# (b) docker-registry: TLS certificate + htpasswd + process start until /v2/ answers.
peer=()
if command -v docker-registry >/dev/null 2>&1; then
  for i in $(seq 1 "$RUNS"); do
    D=$WORK/dr-$i
    mkdir -p "$D"
    port=$(free_port)
    t0=$(date +%s.%N)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
      -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
      -keyout "$D/key.pem" -out "$D/cert.pem" >>"$BENCH_LOG" 2>&1
    echo "pw-$RANDOM$RANDOM" | "$GANTRY" registry htpasswd zuul --password-stdin --cost 5 --file "$D/htpasswd" >>"$BENCH_LOG" 2>&1
    cat >"$D/config.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $D/data}}
http: {addr: 127.0.0.1:$port, tls: {certificate: $D/cert.pem, key: $D/key.pem}}
auth: {htpasswd: {realm: buildset, path: $D/htpasswd}}
YML
    docker-registry serve "$D/config.yml" >>"$BENCH_LOG" 2>&1 &
    pid=$!
    until curl -sk -o /dev/null "https://127.0.0.1:$port/v2/"; do sleep 0.005; done
    t1=$(date +%s.%N)
    peer+=("$(python3 -c "print(f'{($t1-$t0)*1000:.1f}')")")
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
fi

# (c) builtin vs ansible executor on the seed's check runs.
ANSIBLE=${GANTRY_ANSIBLE:-}
[ -z "$ANSIBLE" ] && [ -x "$HOME/.cache/gantry-test/venv/bin/ansible-playbook" ] && ANSIBLE=$HOME/.cache/gantry-test/venv/bin/ansible-playbook
[ -z "$ANSIBLE" ] && ANSIBLE=$(command -v ansible-playbook || true)
builtin=() ansible=()
if [ -n "$ANSIBLE" ]; then
  export GANTRY_ANSIBLE=$ANSIBLE
  for i in $(seq 1 "$RUNS"); do
    for ex in builtin ansible; do
      S=$WORK/exec-$ex-$i
      t=$(timed bash -c "'$GANTRY' -q run examples/seed/base --pipeline check --change 1 --state-dir '$S' --executor $ex && '$GANTRY' -q run examples/seed/app --pipeline check --change 2 --ahead base:1 --state-dir '$S' --executor $ex")
      if [ "$ex" = builtin ]; then builtin+=("$t"); else ansible+=("$t"); fi
    done
  done
fi

echo "check pipeline (change 2, change 1 ahead): ${runs[*]} s"
echo "buildset registry ready, gantry in-process: ${ready[*]} ms"
[ ${#peer[@]} -gt 0 ] && echo "buildset registry ready, docker-registry process: ${peer[*]} ms"
echo
echo "== gantry run benchmark: medians of $RUNS runs"
printf "%-48s %12s\n" "gantry run --pipeline check (seed, change 2)" "$(median "${runs[@]}") s"
printf "%-48s %12s\n" "buildset registry ready (gantry, in-process)" "$(median "${ready[@]}") ms"
if [ ${#peer[@]} -gt 0 ]; then
  printf "%-48s %12s  (%s)\n" "buildset registry ready (docker-registry + TLS)" "$(median "${peer[@]}") ms" \
    "$(ratio "$(median "${ready[@]}")" "$(median "${peer[@]}")") slower"
fi
if [ ${#ansible[@]} -gt 0 ]; then
  echo "seed check runs, builtin executor: ${builtin[*]} s; ansible executor: ${ansible[*]} s"
  printf "%-48s %12s\n" "seed check x2, --executor builtin" "$(median "${builtin[@]}") s"
  printf "%-48s %12s  (%s)\n" "seed check x2, --executor ansible" "$(median "${ansible[@]}") s" \
    "$(ratio "$(median "${builtin[@]}")" "$(median "${ansible[@]}")") slower"
fi
