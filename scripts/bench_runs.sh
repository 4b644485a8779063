#!/usr/bin/env bash
# The benchmark outputs committed in runs/bench/ (chapter "Making it fast", section 7, prints them).
# Run on a quiet machine: nothing else may use the cores while it times (about 20 minutes on 2 cores).
#   bash scripts/bench_runs.sh            # all three
#   bash scripts/bench_runs.sh live       # only one of: bench, live, cost
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/bench
mkdir -p "$OUT"
what="${1:-all}"
if [[ $what == all || $what == bench ]]; then   # the network, DDS before / after (3 fresh processes each)
    python -m dmbir_edu.bench --compile --methods fbp admm_tv dds_before dds_50 dds --repeats 3 | tee "$OUT/bench_64.txt"
fi
if [[ $what == all || $what == live ]]; then    # one update of every live slider of the book
    python -m dmbir_edu.bench --live --repeats 3 | tee "$OUT/live.txt"
fi
if [[ $what == all || $what == cost ]]; then    # DDS at 64^3, 128^3, 256^3: time and peak memory
    python -m dmbir_edu.bench --sizes 64 128 256 --methods dds --repeats 1 | tee "$OUT/cost_curve.txt"
fi
