#!/usr/bin/env bash
# The saved 1000-step runs of chapters 6 (limited angle) and 7 (MRI), read by their section "At a
# working step count" (book.long_runs): the reported protocol (experiments.REPORTED: data on a twice
# finer grid, the central 8 slices), noise-free: the first held-out test phantom for the 90 degree
# arc (seeds 0 1 2) and the MNI152 brain for uniform1d-x8 (seeds 0 1: a 1000-step MRI run costs
# about 10 minutes of one core per sampler, and a third seed did not fit the session that made
# them). At 1000 steps: 3D ADMM-TV, DiffusionMBIR, the slice-wise sampler with its own CG budget
# (slicewise, 50 iterations per step) and with DiffusionMBIR's (slicewise_cg1); at 100 steps the three samplers again, so that "steps", "CG
# budget" and "TV term" are separate differences. Two streams of one thread each, about an hour on
# a 2-core machine. Usage: bash scripts/long_steps.sh [la|mri|both|sv]; "sv" makes chapter 5's own
# runs (8-view sparse-view CT on the first held-out test phantom, seeds 0 1 2: the four rows at
# 1000 steps, DiffusionMBIR at 300 and 2000; reported{N}_seed{S}.*), about two hours on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/long_steps
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
X="python -m dmbir_edu.experiments"
SAMPLERS="diffusionmbir slicewise slicewise_cg1"

cell() {   # cell TASK_ARGS PREFIX SEED: the 1000- and 100-step files of one seed
    local args=$1 prefix=$2 s=$3
    $X $args --methods admm_tv $SAMPLERS --steps 1000 --depth 8 --volumes 1 --noise none --seed "$s" \
        --save "$OUT/${prefix}1000_seed$s.json" --save-volumes "$OUT/${prefix}1000_seed$s.pt" > "$OUT/${prefix}1000_seed$s.log" 2>&1
    $X $args --methods $SAMPLERS --steps 100 --depth 8 --volumes 1 --noise none --seed "$s" \
        --save "$OUT/${prefix}100_seed$s.json" --save-volumes "$OUT/${prefix}100_seed$s.pt" > "$OUT/${prefix}100_seed$s.log" 2>&1
}

la() { for s in "$@"; do cell "limited_angle --arc 90" la90_ "$s"; done; }
mri() { for s in "$@"; do cell "mri --accel uniform1d-x8" mri_x8_ "$s"; done; }
sv() {
    for s in 0 1 2; do
        $X sparse_view --views 8 --methods admm_tv $SAMPLERS --steps 1000 --depth 8 --volumes 1 --noise none --seed $s \
            --save "$OUT/reported1000_seed$s.json" --save-volumes "$OUT/reported1000_seed$s.pt" > "$OUT/reported1000_seed$s.log" 2>&1
        for n in 300 2000; do
            $X sparse_view --views 8 --methods diffusionmbir --steps $n --depth 8 --volumes 1 --noise none --seed $s \
                --save "$OUT/reported${n}_seed$s.json" --save-volumes "$OUT/reported${n}_seed$s.pt" > "$OUT/reported${n}_seed$s.log" 2>&1
        done
    done
}

case "${1:-both}" in
    la) la 0 1 2 ;;
    mri) mri 0 1 ;;
    both) (la 0 1 2) & (mri 0 1) & wait ;;
    sv) sv ;;
    *) echo "usage: bash scripts/long_steps.sh [la|mri|both|sv]" >&2; exit 2 ;;
esac
