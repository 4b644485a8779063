"""The GPU projection of runs/bench/cost_curve.txt with the FLOPs counted at each size by today's
bench.flops_per_slice (attention included); the network seconds are those cost_curve.txt measured.

    python scripts/bench_projection.py > runs/bench/projection.txt
"""
from dmbir_edu import bench
from dmbir_edu.prior import load_prior

network_s = {64: 5.59, 128: 56.38, 256: 940.39}     # DDS's network seconds, runs/bench/cost_curve.txt
print(f"GPU: {bench.GPU_PROJECTION} (ASSUMED)")
for s, here in network_s.items():
    flops = bench.flops_per_slice(load_prior(image_size=s))
    evals = 10 * s
    fp32, bf16 = bench.projection(flops, evals)
    print(f"{s}^3: {flops / 1e9:.2f} GFLOP per slice, {evals:,} slice evaluations: "
          f"{fp32:.2f} s float32, {bf16:.3f} s bf16; "
          f"measured on the CPU: network {here:.1f} s, {flops * evals / here / 1e9:.0f} GFLOP/s")
