# Shared helpers for the benchmarks (sourced).

# A free TCP port on 127.0.0.1 (for peers that cannot report the port they bound).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Wall time of a command in seconds (stdout/stderr to $BENCH_LOG).
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >>"$BENCH_LOG" 2>&1 || { echo "FAILED: $*" >&2; tail -5 "$BENCH_LOG" >&2; return 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1-$t0:.3f}')"
}

# Median of numbers on the command line.
median() {
  python3 -c 'import statistics,sys; print(f"{statistics.median(map(float,sys.argv[1:])):.3f}")' "$@"
}

ratio() {
  python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f"{b/a:.2f}x" if a>0 else "n/a")' "$1" "$2"
}

# Peak resident set of a process, in MiB.
peak_rss_mib() {
  awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "n/a"
}

# Waits until an HTTP endpoint answers (any status).
wait_http() {
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "no answer from $1" >&2
  return 1
}
