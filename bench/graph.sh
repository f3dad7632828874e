#!/usr/bin/env bash
# Times gantry's job module on a generated configuration: 10,000 jobs in three levels of
# inheritance with 20,000 dependency edges (load + freeze + graph; target < 1 s in a
# release build), and provides/requires over a queue of 50 changes ahead.
#
# Usage: bench/graph.sh [DIR]   (DIR keeps the generated configuration; default: a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$(mktemp -d)}
cargo build --release --quiet --example job_bench --bin gantry
echo "== library (examples/job_bench.rs)"
target/release/examples/job_bench "$dir"
echo "== CLI: gantry job graph --timings (includes printing the graph as JSON)"
target/release/gantry job graph --no-library --timings --pipeline check --format json "$dir" > /dev/null
echo "== CLI: gantry config validate (load + every pipeline frozen)"
/usr/bin/time -f "%e s, %M KiB max RSS" target/release/gantry config validate --no-library "$dir" 2>&1
