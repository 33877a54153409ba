#!/usr/bin/env bash
# Runs every scenario RUNS times (default 3) and appends the JSON lines to
# bench/results/<scenario>.jsonl; BENCHMARKS.md reports the median and min–max of these files.
# Usage: bench/run-all.sh [scenario...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
# Load settings of the published runs (each overridable from the environment).
COMMON=(--duration "${DURATION:-5}" --warmup "${WARMUP:-1}")
BIN=${CARGO_TARGET_DIR:-target}/release/simpul-bench
cargo build --release -p simpul-bench
mkdir -p bench/results
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(accept e2e query batch growth payload backlog coldstart sweep)
for s in "${scenarios[@]}"; do
  extra=(--connections "${CONNECTIONS:-64}")
  case $s in
    query) extra+=(--rates 100,500,1000) ;;
    # Enough workers that the generator, not the server, is never what limits the rate.
    sweep) extra=(--rates 1000,4000,8000,12000,16000,24000 --connections 128) ;;
  esac
  for i in $(seq "$RUNS"); do
    echo "== $s run $i/$RUNS; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    order=()
    # growth: the two registries in alternating order, so neither is always the second bus.
    [ "$s" = growth ] && { [ $((i % 2)) = 1 ] && order=(--members 10,10000) || order=(--members 10000,10); }
    "$BIN" run --scenario "$s" "${COMMON[@]}" "${extra[@]}" "${order[@]}" | tee -a "bench/results/$s.jsonl"
  done
done
