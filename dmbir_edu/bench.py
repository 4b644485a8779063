"""Benchmark harness: where the time goes, and what each method costs, measured in one run.

    python -m dmbir_edu.bench                      # 64^3, 8-view sparse-view CT
    python -m dmbir_edu.bench --size 128 --methods dds     # 128^3 (the 64x64 prior run out of distribution)

Prints (1) the machine, (2) network time per slice evaluation in float32 and with bf16
autocast, (3) one MBIR step (ADMM-TV-z with 1 and 5 CG iterations on the whole volume) as a
share of the network time of a diffusion step, (4) per method: wall time (median of
``--repeats`` runs, each in a fresh process), peak resident memory of that process, network
evaluations per slice, mean PSNR over axes, and the ratio to DDS. Only ratios measured in the
same run should be compared: the machine is shared and its speed drifts.

Explained in: chapter "Making it fast" (book/09_speed.ipynb).
"""
import argparse
import copy
import functools
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from . import data, metrics
from .ct import ParallelBeamCT, sparse_view_angles
from .experiments import method_kwargs, nfe_per_slice
from .mbir import ADMMState, admm_tv_step, tv_operators
from .operators import device_arg, positive_int_arg, scaled_defaults
from .prior import load_prior
from .reconstruct import DIFFUSION_METHODS, reconstruct
from .sampling import DMBIR
from .train import machine


def timeit(fn, repeats=5, sync=None):
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call; on a CUDA
    ``sync`` device the clock waits for the device to finish."""
    def wait():
        if sync is not None and torch.device(sync).type == "cuda":
            torch.cuda.synchronize(sync)

    fn()
    times = []
    for _ in range(repeats):
        wait()
        t0 = time.perf_counter()
        fn()
        wait()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# The network paths compared: memory layout, torch.compile, bf16 autocast.
# ``compiled`` is left out by default: compiling takes tens of seconds (``bench --compile`` adds it).
NET_PATHS = {"float32": dict(channels_last=False), "channels_last": dict(channels_last=True),
             "bf16": dict(channels_last=True, autocast=True)}
COMPILED = {"compiled": dict(channels_last=True, compile=True)}


def network_time(prior, n_slices=12, repeats=5, paths=NET_PATHS):
    """Seconds per slice evaluation for each network path, on a chunk of ``n_slices``; the paths
    are timed in turn, round after round (the median over rounds), so that a drift in the machine's
    speed hits them all alike. The prior is left on its default path (channels_last)."""
    x = torch.rand(n_slices, prior.image_size, prior.image_size, device=prior.device)
    fns = {}
    for name, opts in paths.items():
        clone = copy.deepcopy(prior)
        clone.autocast = opts.get("autocast", False)
        clone.speed_up(opts["channels_last"], opts.get("compile", False))
        fns[name] = lambda p=clone: p.denoise(x, 1.0)
        fns[name]()                                                  # warm-up (compiles)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timeit(fn, 1, sync=x.device))
    return {name: statistics.median(t) / n_slices for name, t in times.items()}


def mbir_step_time(A, x, y, n_cg, repeats=5):
    """Seconds of one ADMM-TV-z iteration (CG + shrink + dual) on the whole volume, at the
    default lam and rho of DiffusionMBIR."""
    Dz = tv_operators("z")
    state = ADMMState.zeros(x, 1)
    ATy = A.adjoint(y)
    lam, rho = scaled_defaults(A, None, None, DMBIR)
    return timeit(lambda: admm_tv_step(x, state, y, A, Dz, lam, rho, n_cg, ATy), repeats, sync=x.device)


# Network evaluations per slice of each method, from its keyword arguments (one count for the
# package: ``experiments.nfe_per_slice``, which the tables print too).
NFE = {m: functools.partial(nfe_per_slice, m) for m in ("fbp", "admm_tv", "dds", "diffusionmbir", "slicewise")}


def run_one(spec):
    """Reconstruct once in this process; returns wall seconds, peak RSS (MB) and PSNR per axis.

    ``spec``: size, views, method, kwargs, and optionally depth (axial slices D, default size)
    and batch (slices per network call, ``Prior.batch``). ``base_mb`` is the peak RSS before the reconstruction
    (Python, torch, the prior, the operator and the volume).
    """
    size, views, method, kw = spec["size"], spec["views"], spec["method"], spec["kwargs"]
    device = spec.get("device", "cpu")
    x = data.phantom(data.TEST_SEEDS[0], size, depth=spec.get("depth")).to(device)
    A = ParallelBeamCT(size, sparse_view_angles(views), device=device)
    prior = load_prior(image_size=size, device=device) if method in DIFFUSION_METHODS else None
    if prior is not None and spec.get("batch"):
        prior.batch = spec["batch"]
    y = A(x)
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    x_hat = reconstruct(y, A, method, prior=prior, generator=torch.Generator().manual_seed(0), progress=False, **kw)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return dict(seconds=seconds, peak_mb=peak_mb, base_mb=base_mb, gpu_peak_mb=gpu_mb,
                psnr={k: v["psnr"] for k, v in metrics.per_axis(x_hat.cpu(), x.cpu()).items()})


def run_in_fresh_process(spec):
    """``run_one(spec)`` in a new Python process (so its peak memory is its own); a failure
    raises with the child's error output."""
    out = subprocess.run([sys.executable, "-m", "dmbir_edu.bench", "--one", json.dumps(spec)],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"bench child failed for {spec}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# The sparse-view CT settings of experiments.PARAMS (chosen on validation seeds); DiffusionMBIR
# runs 500 steps here (999 NFE per slice, a quarter of the paper's 4000): the "many more steps" baseline.
DEFAULT_METHODS = {m: method_kwargs("sparse_view", m) for m in ("fbp", "admm_tv", "dds", "diffusionmbir")}
DEFAULT_METHODS["diffusionmbir"]["n_steps"] = 500


def bench(size=64, views=8, methods=DEFAULT_METHODS, repeats=3, print_fn=print, device="cpu", compile=False):
    """Run the whole benchmark on ``device``; returns a dict of everything printed."""
    print_fn(f"machine: {machine()}" + (f"; device {torch.cuda.get_device_name(device)}"
                                        if torch.device(device).type == "cuda" else ""))
    prior = load_prior(image_size=size, device=device)
    net = network_time(prior, paths=NET_PATHS | (COMPILED if compile else {}))
    print_fn("network, ms per slice evaluation (median of rounds, paths interleaved): " + ", ".join(
        f"{name} {t * 1e3:.2f} ({t / net['float32']:.2f} x float32)" for name, t in net.items()))
    x = data.phantom(data.TEST_SEEDS[0], size).to(device)
    A = ParallelBeamCT(size, sparse_view_angles(views), device=device)
    y = A(x)
    step_net = {"diffusionmbir": 2 * net["channels_last"] * size, "dds": net["channels_last"] * size}
    mbir = {n_cg: mbir_step_time(A, x, y, n_cg) for n_cg in (1, 5)}
    for n_cg, t in mbir.items():
        print_fn(f"ADMM-TV-z step, {n_cg} CG: {t * 1e3:.1f} ms = {100 * t / step_net['diffusionmbir']:.1f}% of a "
                 f"DiffusionMBIR step's network time, {100 * t / step_net['dds']:.1f}% of a DDS step's")
    rows = {}
    for method, kw in methods.items():
        spec = dict(size=size, views=views, method=method, kwargs=kw, device=device)
        nfe = NFE[method](kw)
        runs = [run_in_fresh_process(spec) for _ in range(repeats if nfe < 500 else 1)]   # one long run suffices
        rows[method] = dict(seconds=statistics.median(r["seconds"] for r in runs), runs=[r["seconds"] for r in runs],
                            peak_mb=max(r["peak_mb"] for r in runs), nfe=nfe,
                            psnr=statistics.mean(runs[0]["psnr"].values()), kwargs=kw)
    ref = rows.get("dds", {}).get("seconds")
    print_fn(f"\n{size}^3 volume, {views}-view sparse-view CT, held-out phantom {data.TEST_SEEDS[0]}")
    print_fn(f"{'method':<15}{'NFE/slice':>10}{'wall s':>9}{'runs':>22}{'peak MB':>9}{'PSNR':>7}{'x DDS':>7}")
    for m, r in rows.items():
        runs = ",".join(f"{s:.1f}" for s in r["runs"])
        ratio = f"{r['seconds'] / ref:.1f}" if ref else "-"
        print_fn(f"{m:<15}{r['nfe']:>10}{r['seconds']:>9.1f}{runs:>22}{r['peak_mb']:>9.0f}{r['psnr']:>7.2f}{ratio:>7}")
    return dict(machine=machine(), network=net, mbir=mbir, rows=rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dmbir_edu.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=positive_int_arg, default=64,
                   help="volume size (size^3; the prior runs out of distribution beyond 64)")
    p.add_argument("--views", type=positive_int_arg, default=8, help="sparse-view CT: number of views")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(DEFAULT_METHODS),
                   help="methods to time")
    p.add_argument("--dmbir-steps", type=positive_int_arg, default=DEFAULT_METHODS["diffusionmbir"]["n_steps"],
                   help="DiffusionMBIR's diffusion steps")
    p.add_argument("--repeats", type=positive_int_arg, default=3,
                   help="runs per method, each in a fresh process (median)")
    p.add_argument("--device", type=device_arg, default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd network")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(json.loads(a.one))))
        return
    methods = {m: dict(DEFAULT_METHODS[m]) for m in a.methods}
    if "diffusionmbir" in methods:
        methods["diffusionmbir"]["n_steps"] = a.dmbir_steps
    bench(a.size, a.views, methods, a.repeats, device=a.device, compile=a.compile)


if __name__ == "__main__":
    main()
