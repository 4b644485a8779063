#!/usr/bin/env bash
# The measurements of the real-data priors (issue "Priors that know anatomy"), as run for the
# book's appendix "Training the prior" and the closing note: two streams of one thread each,
# logs and JSON rows under runs/real_priors/. Validation volumes first (choices), then the test
# volumes (reported only). Usage: bash scripts/real_priors.sh [ct|mr|both]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/real_priors
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
X="python -m dmbir_edu.experiments"
DEPTH=16     # the central 16 axial slices of each volume (a 64 x 64 x 16 slab; whole volumes cost 4x more)

ct() {
    # validation (the head CT): carried vs reset (z, u) and slice-wise at the book's 100 steps and at
    # 300, on its central 8 slices (the same cost as 100 steps on 16), DDS at its 50
    $X steps sparse_view --views 8 --data real --depth 8 --steps 100 300 --noise none > $OUT/ct_val_steps.log 2>&1
    $X sparse_view --views 8 --data real --split validation --depth $DEPTH --noise none \
        --methods admm_tv dds --save $OUT/ct_val_dds.json > $OUT/ct_val_dds.log 2>&1
    # test: the chest CT lung2, every method, 8 / 4 / 2 views and a 90 degree arc
    $X sparse_view --views 8 4 2 --data real --depth $DEPTH --noise none \
        --methods fbp admm_tv slicewise diffusionmbir dmbir_reset dds --save $OUT/ct_test.json > $OUT/ct_test.log 2>&1
    $X limited_angle --arc 90 --data real --depth $DEPTH --noise none \
        --methods fbp admm_tv slicewise diffusionmbir dmbir_reset dds --save $OUT/ct_test_90.json > $OUT/ct_test_90.log 2>&1
    # the released method at 1000 steps on the 4 central slices of lung2
    $X sparse_view --views 8 --data real --depth 4 --steps 1000 --noise none \
        --methods admm_tv diffusionmbir dmbir_reset --save $OUT/ct_test_1000.json > $OUT/ct_test_1000.log 2>&1
}

mr() {
    $X steps mri --accel uniform1d-x4 --data real --depth 8 --steps 100 300 --noise none > $OUT/mr_val_steps.log 2>&1
    $X mri --accel uniform1d-x4 uniform1d-x8 --data real --split validation --depth $DEPTH --noise none \
        --methods adjoint admm_tv dds --save $OUT/mr_val_dds.json > $OUT/mr_val_dds.log 2>&1
    # test: ch2 and MNI152 with mr64, and with phantom64 (is it the prior or the volume?)
    $X mri --accel uniform1d-x4 uniform1d-x8 --data real --volumes 2 --depth $DEPTH --noise none \
        --methods adjoint admm_tv slicewise diffusionmbir dmbir_reset dds --save $OUT/mr_test.json > $OUT/mr_test.log 2>&1
    $X mri --accel uniform1d-x4 uniform1d-x8 --data real --volumes 2 --depth $DEPTH --noise none --prior phantom64 \
        --methods dds diffusionmbir --save $OUT/mr_test_phantom64.json > $OUT/mr_test_phantom64.log 2>&1
    # generalization: the chest-trained CT prior on the phantom family
    $X sparse_view --views 8 4 --data phantom --volumes 1 --depth $DEPTH --noise none --prior ct64 \
        --methods admm_tv diffusionmbir dds --save $OUT/ct64_on_phantoms.json > $OUT/ct64_on_phantoms.log 2>&1
    $X sparse_view --views 8 4 --data phantom --volumes 1 --depth $DEPTH --noise none \
        --methods diffusionmbir dds --save $OUT/phantom64_on_phantoms.json > $OUT/phantom64_on_phantoms.log 2>&1
}

case "${1:-both}" in
    ct) ct ;;
    mr) mr ;;
    both) ct & mr & wait ;;
esac
# Run after the two streams above (added while they ran): the same 4 slices at the book's 100 steps,
# and phantom64's DDS on the same 16 slices of lung2 (the contrast for ct64):
#   python -m dmbir_edu.experiments sparse_view --views 8 --data real --depth 4 --noise none --methods admm_tv diffusionmbir dmbir_reset dds
#   python -m dmbir_edu.experiments sparse_view --views 8 4 2 --data real --depth 16 --noise none --prior phantom64 --methods dds
#   python -m dmbir_edu.experiments limited_angle --arc 90 --data real --depth 16 --noise none --prior phantom64 --methods dds
