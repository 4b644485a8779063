"""Benchmark harness: where the time goes, and what each method costs, measured in one run.

    python -m dmbir_edu.bench                      # 64^3, 8 views: the network, DDS before / after, the methods
    python -m dmbir_edu.bench --methods dds_before dds --repeats 3   # the DDS target: before and after
    python -m dmbir_edu.bench --sizes 64 128 256 --methods dds      # the cost curve (time, peak memory)
    python -m dmbir_edu.bench --live               # one update of every live slider of the book
    python -m dmbir_edu.bench --compile            # also torch.compile: its compile time and when it pays off

Prints (1) the machine; (2) the network per slice evaluation on each path (float32, channels_last,
bf16 autocast, optionally torch.compile), against the batch (slices per call) and the number of
threads, with the FLOPs of one slice and the rate achieved; (3) one ADMM-TV-z step (1 and 5 CG
iterations) as a share of a diffusion step's network time; (4) per method, at every size: wall
time (median of ``--repeats`` runs, each in a fresh process), where it went (the network, the
projector A and A^T, the rest: ADMM / CG arithmetic, noise, re-noising), peak resident memory,
network evaluations per slice, PSNR (at 64^3 only: a larger size runs the 64 x 64 prior out of
distribution) and the ratio to ``dds_before`` (DDS as it was; the first row where it did not
run). Only ratios measured in the same run should be
compared: the machine is shared and its speed drifts.

The volume is the first VALIDATION phantom (``data.VALIDATION_SEEDS[0]``) with data simulated on
a twice finer grid (``simulate``), as the experiments' protocol; the cost curve beyond 64^3 makes
its data with the reconstructing operator (its times do not depend on it, and it reports no PSNR).

Explained in: chapter "Making it fast" (book/09_speed.ipynb).
"""
import argparse
import collections
import contextlib
import copy
import functools
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from . import data, metrics, simulate
from .ct import ParallelBeamCT, sparse_view_angles
from .experiments import method_kwargs, nfe_per_slice, operator, test_set
from .mbir import ADMMState, admm_tv_step, tv_operators
from .operators import WrappedOperator, device_arg, positive_int_arg, scaled_defaults
from .prior import DEFAULT_PRIORS, WrappedPrior, load_prior, native_bf16
from .reconstruct import DIFFUSION_METHODS, PRESETS, reconstruct
from .sampling import DMBIR
from .train import machine


def wait(device):
    """Wait for ``device`` to finish its queued work before a clock is read: a GPU works
    asynchronously; on a CPU (or ``None``) there is nothing to wait for."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn, repeats=5, sync=None):
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call; on a CUDA
    ``sync`` device the clock waits for the device to finish."""
    fn()
    times = []
    for _ in range(repeats):
        wait(sync)
        t0 = time.perf_counter()
        fn()
        wait(sync)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns, repeats=5, sync=None):
    """{name: median seconds of one call of fns[name]()}, after a warm-up call of each; the
    functions are timed in turn, round after round, so that a drift in the machine's speed hits
    them all alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timeit(fn, 1, sync))
    return {name: statistics.median(t) for name, t in times.items()}


# The network paths compared: memory layout, bf16 autocast, torch.compile (``compiled`` is timed
# only with ``bench --compile``: compiling takes a minute on 2 cores, seconds from the cache).
NET_PATHS = {"float32": dict(channels_last=False, autocast=False),
             "channels_last": dict(channels_last=True, autocast=False),
             "bf16": dict(channels_last=True, autocast=True)}
COMPILED = {"compiled": dict(channels_last=True, compile=True)}


def network_time(prior, n_slices=None, repeats=5, paths=NET_PATHS):
    """Seconds per slice evaluation for each network path, on ``n_slices`` slices (default: one
    batch of the prior), paths interleaved (``interleaved``). A path's ``autocast`` forces bf16
    on or off (absent: the prior's own choice). Also ``compile_seconds``: the first call of each
    compiled path (tracing and compiling), not included in its time."""
    n_slices = n_slices or prior.batch_size()
    x = torch.rand(n_slices, prior.image_size, prior.image_size, device=prior.device)
    fns, compile_seconds = {}, {}
    for name, opts in paths.items():
        clone = copy.deepcopy(prior)
        clone.autocast = opts.get("autocast", prior.autocast)
        clone.speed_up(opts["channels_last"], opts.get("compile", False))
        fns[name] = lambda p=clone: p.denoise(x, 1.0)
        if opts.get("compile"):
            t0 = time.perf_counter()
            fns[name]()
            compile_seconds[name] = time.perf_counter() - t0
    out = {name: t / n_slices for name, t in interleaved(fns, repeats, x.device).items()}
    return out | ({"compile_seconds": compile_seconds} if compile_seconds else {})


def batch_time(prior, batches=(4, 8, 16, 32, 64), n_slices=64, repeats=3):
    """Seconds per slice evaluation of ``n_slices`` slices sent ``b`` at a time, for each ``b`` of
    ``batches`` (interleaved); the prior's own batch is left as it was."""
    x = torch.rand(n_slices, prior.image_size, prior.image_size, device=prior.device)
    clones = {b: copy.copy(prior) for b in batches}          # shallow: the same network, its own batch
    for b, clone in clones.items():
        clone.batch = b
    times = interleaved({b: (lambda c=c: c.denoise(x, 1.0)) for b, c in clones.items()}, repeats, x.device)
    return {b: t / n_slices for b, t in times.items()}


def thread_time(prior, threads=None, repeats=3):
    """Seconds per slice evaluation (one batch) with each number of torch threads in ``threads``
    (default: 1 up to the current number); the current number is restored."""
    now = torch.get_num_threads()
    x = torch.rand(prior.batch_size(), prior.image_size, prior.image_size, device=prior.device)
    out = {}
    try:
        for k in threads or range(1, now + 1):
            torch.set_num_threads(k)
            out[k] = timeit(lambda: prior.denoise(x, 1.0), repeats, x.device) / len(x)
    finally:
        torch.set_num_threads(now)
    return out


def flops_per_slice(prior):
    """Floating-point operations of one slice evaluation (multiply and add counted as 2), counted
    by ``torch.utils.flop_counter`` on the network's operators (convolutions, matrix products,
    attention; the CPU's fused attention kernel is counted with the formula torch uses for the GPU's,
    which its counter does not apply to the CPU's by itself)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def attention(q, k, v, *args, out_shape=None, **kwargs):       # called with the operands' shapes
        return sdpa_flop_count(q, k, v)

    x = torch.rand(1, prior.image_size, prior.image_size, device=prior.device)
    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: attention}
    with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        prior.denoise(x, 1.0)
    return counter.get_total_flops()


def mbir_step_time(A, x, y, n_cg, repeats=5):
    """Seconds of one ADMM-TV-z iteration (CG + shrink + dual) on the whole volume, at the
    default lam and rho of DiffusionMBIR."""
    Dz = tv_operators("z")
    state = ADMMState.zeros(x, 1)
    ATy = A.adjoint(y)
    lam, rho = scaled_defaults(A, None, None, DMBIR)
    return timeit(lambda: admm_tv_step(x, state, y, A, Dz, lam, rho, n_cg, ATy), repeats, x.device)


class Stopwatch:
    """Seconds spent in named parts of a run (``with watch("network"): ...``); on a CUDA device
    the clock waits for the device at both ends."""

    def __init__(self, device):
        self.device, self.seconds = device, collections.Counter()

    @contextlib.contextmanager
    def __call__(self, part):
        wait(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            wait(self.device)
            self.seconds[part] += time.perf_counter() - t0


class TimedPrior(WrappedPrior):
    """The prior, its denoiser's time added to ``watch["network"]``."""

    def __init__(self, prior, watch):
        super().__init__(prior)
        self.watch = watch

    def denoise(self, x, sigma):
        with self.watch("network"):
            return self.prior.denoise(x, sigma)


class TimedOperator(WrappedOperator):
    """The operator, the time of A and A^T added to ``watch["projector"]``."""

    def __init__(self, A, watch):
        super().__init__(A)
        self.watch = watch

    def __call__(self, x):
        with self.watch("projector"):
            return self.A(x)

    def adjoint(self, y):
        with self.watch("projector"):
            return self.A.adjoint(y)


# Network evaluations per slice of each method, from its keyword arguments (one count for the
# package: ``experiments.nfe_per_slice``, which the tables print too).
NFE = {m: functools.partial(nfe_per_slice, m) for m in ("fbp", "admm_tv", "dds", "diffusionmbir", "slicewise")}


def bench_volume(size, depth=None, fine=2, seed=None):
    """The benchmark's volume and its data-making factor: the validation phantom ``seed`` (default
    ``data.VALIDATION_SEEDS[0]``) on a grid ``fine`` times finer (1: on the reconstruction grid)."""
    seed = data.VALIDATION_SEEDS[0] if seed is None else seed
    return data.phantom(seed, size * fine, depth=None if depth is None else depth * fine)


def run_one(spec):
    """Reconstruct once in this process; returns wall seconds, the seconds of its parts, peak RSS
    (MB) and PSNR per axis.

    ``spec``: size, views, method (a ``reconstruct`` method) and kwargs, and optionally depth
    (axial slices D, default size), batch (slices per network call, ``Prior.batch``; default the
    prior's), autocast (forces bf16 on or off), fine (the data's grid factor, default 2), device.
    ``base_mb`` is the peak RSS before the reconstruction (Python, torch, the prior, the operator
    and the volume). ``parts``: seconds in the network and in the projector (A and A^T), and the
    rest of the wall time.
    """
    size, views, method, kw = spec["size"], spec["views"], spec["method"], spec["kwargs"]
    device = spec.get("device", "cpu")
    fine = spec.get("fine", 2)
    A = ParallelBeamCT(size, sparse_view_angles(views), device=device)
    x, y = simulate.truth_and_data(A, bench_volume(size, spec.get("depth"), fine).to(device), fine)
    prior = load_prior(image_size=size, device=device) if method in DIFFUSION_METHODS else None
    if prior is not None:
        prior.batch = spec.get("batch") or prior.batch
        prior.autocast = spec.get("autocast", prior.autocast)
    watch = Stopwatch(device)
    timed_A = A if method == "fbp" else TimedOperator(A, watch)        # FBP needs A.fbp, which a wrapper lacks
    timed_prior = TimedPrior(prior, watch) if prior is not None else None
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    wait(device)
    t0 = time.perf_counter()
    x_hat = reconstruct(y, timed_A, method, prior=timed_prior, generator=torch.Generator().manual_seed(0),
                        progress=False, **kw)
    wait(device)
    seconds = time.perf_counter() - t0
    parts = dict(watch.seconds)
    parts["rest"] = seconds - sum(parts.values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return dict(seconds=seconds, parts=parts, peak_mb=peak_mb, base_mb=base_mb, gpu_peak_mb=gpu_mb,
                psnr={k: v["psnr"] for k, v in metrics.per_axis(x_hat.cpu(), x.cpu()).items()})


def run_in_fresh_process(spec):
    """``run_one(spec)`` in a new Python process (so its peak memory is its own); a failure
    raises with the child's error output."""
    out = subprocess.run([sys.executable, "-m", "dmbir_edu.bench", "--one", json.dumps(spec)],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"bench child failed for {spec}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# The rows the benchmark can time: a ``reconstruct`` method and what it runs with. The sparse-view
# settings of experiments.PARAMS (chosen on validation seeds); "dds_before" is DDS as it was
# before issue "DDS in seconds" (50 steps, 64 slices per network call), "dds_50" the 50 steps at
# today's batch (what the batch alone gave); DiffusionMBIR runs 500 steps here (999 NFE per
# slice, a quarter of the paper's 4000): the "many more steps" baseline.
ROWS = {"fbp": ("fbp", {}), "admm_tv": ("admm_tv", {}), "dds": ("dds", {}),
        "diffusionmbir": ("diffusionmbir", dict(n_steps=500)),
        "dds_before": ("dds", dict(n_steps=50, eta=0.85)), "dds_50": ("dds", dict(n_steps=50))}
ROW_BATCH = {"dds_before": 64}                      # slices per network call, where a row sets it
DEFAULT_METHODS = ("fbp", "admm_tv", "dds_before", "dds_50", "dds", "diffusionmbir")


def row_kwargs(label, views=8):
    """The ``reconstruct`` keyword arguments of the row ``label`` at ``views`` sparse views: the
    method's settings for that setting and the benchmark's prior, phantom64
    (``experiments.method_kwargs``), then the row's own."""
    method, extra = ROWS[label]
    return method_kwargs("sparse_view", method, setting=views, prior=DEFAULT_PRIORS["phantom"]) | extra


def time_rows(size, views, rows, repeats, device="cpu", depth=None, print_fn=print):
    """Each row of ``rows`` (labels of ``ROWS``) at ``size``: ``repeats`` runs in fresh processes
    (one for a run of 500 or more network evaluations per slice); returns one record per row."""
    out = {}
    for label in rows:
        method, kw = ROWS[label][0], row_kwargs(label, views)
        spec = dict(size=size, views=views, method=method, kwargs=kw, device=device, depth=depth,
                    batch=ROW_BATCH.get(label), fine=2 if size <= 64 else 1)
        nfe = NFE[method](kw)
        runs = [run_in_fresh_process(spec) for _ in range(repeats if nfe < 500 else 1)]
        mid = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]             # the median run
        out[label] = dict(seconds=statistics.median(r["seconds"] for r in runs), runs=[r["seconds"] for r in runs],
                          parts=mid["parts"], peak_mb=max(r["peak_mb"] for r in runs), nfe=nfe,
                          psnr=statistics.mean(runs[0]["psnr"].values()), n_steps=kw.get("n_steps"),
                          batch=ROW_BATCH.get(label), gpu_peak_mb=mid["gpu_peak_mb"])
        print_fn(f"  {size}^3 {label}: {out[label]['seconds']:.1f} s", flush=True)
    return out


def rows_table(size, rows, print_fn=print, reference="dds_before"):
    """Print the method rows of one size, with each row's wall time over that of ``reference``
    (the first row where it did not run)."""
    ref_label = reference if reference in rows else next(iter(rows))
    ref = rows[ref_label]["seconds"]
    print_fn(f"{'row':<15}{'N':>5}{'NFE/sl':>7}{'wall s':>8}{'runs':>17}{'network':>9}{'proj.':>7}{'rest':>7}"
             f"{'peak MB':>9}{'PSNR':>7}  x {ref_label}")
    for label, r in rows.items():
        p = r["parts"]
        psnr = f"{r['psnr']:.2f}" if size <= 64 else "-"
        runs = ",".join(f"{s:.1f}" for s in r["runs"])
        print_fn(f"{label:<15}{r['n_steps'] or '-':>5}{r['nfe']:>7}{r['seconds']:>8.2f}{runs:>17}"
                 f"{p.get('network', 0):>9.2f}{p.get('projector', 0):>7.2f}{p['rest']:>7.2f}{r['peak_mb']:>9.0f}"
                 f"{psnr:>7}  {r['seconds'] / ref:.3f}")


# A GPU's peak rates, for the projection printed when no GPU ran the benchmark: ASSUMED, from the
# vendor's data sheet (NVIDIA H100 SXM: 67 TFLOP/s float32, 989 TFLOP/s bf16 dense tensor cores),
# and the fraction of it a small network reaches (an assumption: batches of small 2D convolutions
# rarely pass a quarter of the peak).
GPU_PROJECTION = dict(name="NVIDIA H100 SXM", fp32_tflops=67.0, bf16_tflops=989.0, efficiency=0.25)


def projection(flops, evaluations, gpu=GPU_PROJECTION):
    """Seconds of ``evaluations`` slice evaluations of ``flops`` each on ``gpu``, float32 and bf16,
    at its assumed efficiency: the network alone."""
    work = flops * evaluations / gpu["efficiency"]
    return work / (gpu["fp32_tflops"] * 1e12), work / (gpu["bf16_tflops"] * 1e12)


def report_network(prior, compile=False, print_fn=print):
    """Section (2): the network paths, the batch and thread curves, FLOPs and the rate; returns them."""
    paths = NET_PATHS | (COMPILED if compile else {})
    net = network_time(prior, paths=paths)
    compile_s = net.pop("compile_seconds", {})
    default = "bf16" if prior.uses_bf16() else "channels_last"
    print_fn(f"network, ms per slice evaluation ({prior.batch_size()} slices per call, median of interleaved rounds; "
             f"the prior's default path: {default}, native bf16 here: {native_bf16(prior.device)}):")
    print_fn("  " + ", ".join(f"{name} {t * 1e3:.2f} ({t / net['float32']:.2f} x float32)" for name, t in net.items()))
    for name, s in compile_s.items():
        gain = net[default] - net[name]
        payoff = f"pays off after {s / gain:,.0f} slice evaluations" if gain > 0 else "never pays off (not faster)"
        print_fn(f"  {name}: first call (compiling) {s:.1f} s; {payoff}")
    batches = batch_time(prior)
    best = min(batches, key=batches.get)
    print_fn("  slices per call: " + ", ".join(f"{b} {t * 1e3:.2f}" for b, t in batches.items())
             + f" ms; fastest {best}, the prior's default {prior.batch_size()}")
    threads = thread_time(prior)
    print_fn("  threads: " + ", ".join(f"{k} {t * 1e3:.2f} ms" for k, t in threads.items()))
    flops = flops_per_slice(prior)
    print_fn(f"  {flops / 1e9:.2f} GFLOP per {prior.image_size} x {prior.image_size} slice: "
             f"{flops / net[default] / 1e9:.0f} GFLOP/s achieved on the default path")
    return dict(paths=net, compile_seconds=compile_s, batches=batches, threads=threads, flops=flops, default=default)


def bench(size=64, views=8, methods=DEFAULT_METHODS, repeats=3, print_fn=print, device="cpu", compile=False,
          sizes=None):
    """Run the whole benchmark on ``device``; returns a dict of everything printed. ``sizes``: the
    cost curve, the rows at every size (default: ``size`` only)."""
    print_fn(f"machine: {machine()}" + (f"; device {torch.cuda.get_device_name(device)}"
                                        if torch.device(device).type == "cuda" else ""))
    prior = load_prior(image_size=size, device=device)
    net = report_network(prior, compile, print_fn)
    A = ParallelBeamCT(size, sparse_view_angles(views), device=device)
    x = bench_volume(size, fine=1).to(device)
    y = A(x)
    t_net = net["paths"][net["default"]]
    step_net = {"diffusionmbir": 2 * t_net * size, "dds": t_net * size}
    mbir = {n_cg: mbir_step_time(A, x, y, n_cg) for n_cg in (1, 5)}
    for n_cg, t in mbir.items():
        print_fn(f"ADMM-TV-z step, {n_cg} CG: {t * 1e3:.1f} ms = {100 * t / step_net['diffusionmbir']:.1f}% of a "
                 f"DiffusionMBIR step's network time, {100 * t / step_net['dds']:.1f}% of a DDS step's")
    results = {}
    for s in sizes or [size]:
        results[s] = time_rows(s, views, methods, repeats, device, print_fn=print_fn)
    for s, rows in results.items():
        print_fn(f"\n{s}^3 volume, {views}-view sparse-view CT, validation phantom {data.VALIDATION_SEEDS[0]}, "
                 "seconds (wall; network, projector and the rest of the median run)")
        rows_table(s, rows, print_fn)
    if torch.device(device).type == "cpu" and any("dds" in rows for rows in results.values()):
        print_fn(f"\nno GPU ran this; PROJECTED for an {GPU_PROJECTION['name']} from the measured FLOPs, ASSUMING "
                 f"{100 * GPU_PROJECTION['efficiency']:.0f}% of its peak, DDS's network only:")
        for s, rows in results.items():
            if "dds" in rows:
                evals = rows["dds"]["nfe"] * s
                # counted at each size: attention grows faster than the pixels
                flops = net["flops"] if s == size else flops_per_slice(load_prior(image_size=s))
                fp32, bf16 = projection(flops, evals)
                here = rows["dds"]["parts"]["network"]
                print_fn(f"  {s}^3: {flops / 1e9:.2f} GFLOP per slice, {evals:,} slice evaluations: "
                         f"{fp32:.2f} s float32, {bf16:.3f} s bf16 (measured here: network {here:.1f} s, "
                         f"{flops * evals / here / 1e9:.0f} GFLOP/s)")
    return dict(machine=machine(), network=net, mbir=mbir, rows=results.get(size) or next(iter(results.values())),
                sizes=results)


def live_update(name, method, setting=None, device="cpu"):
    """One update of the live slider ``book.LIVE[name]`` with ``method`` at ``setting`` (default its
    first) and lam at the slider's start: the reconstruction, the scores (per axis, flicker) and the
    orthoviews figure drawn to PNG, as the chapter's slider does. Returns a function that runs it."""
    import matplotlib

    matplotlib.use("Agg")
    from . import book, viz

    live = book.LIVE[name]
    task, setting = live["task"], live["settings"][0] if setting is None else setting
    x = next(iter(test_set(task, live["size"], 1, depth=live["depth"]).values())).to(device)
    A = operator(task, setting, live["size"], device)
    prior = load_prior(live.get("prior"), device=device) if method in DIFFUSION_METHODS else None
    kw = book.live_kwargs(name, method, setting, A)

    def update():
        g = torch.Generator().manual_seed(0)
        x_hat = reconstruct(A(x), A, method, prior=prior, generator=g, progress=False, **kw)
        metrics.per_axis(x_hat.cpu(), x.cpu()), metrics.along_z(x_hat.cpu(), x.cpu())
        viz._png_bytes(viz.orthoviews({method: x_hat, "truth": x}, error_ref=x, error_vmax=0.5))
    update.kwargs = kw                                       # what it runs with, for the report
    return update


def live_sliders(device="cpu", repeats=3, print_fn=print):
    """Time one update of every live slider of the book (``book.LIVE``), every method at every
    setting it offers, median of ``repeats`` after a warm-up; prints and returns
    {(slider, method, setting): seconds}."""
    from . import book

    out = {}
    print_fn(f"machine: {machine()}\nlive sliders, seconds per update (reconstruction, scores and figure; "
             f"median of {repeats} after a warm-up):")
    for name, live in book.LIVE.items():
        for method in live["methods"]:
            for setting in live["settings"]:
                update = live_update(name, method, setting, device)
                kw = update.kwargs
                n_iter = kw.get("n_iter", getattr(PRESETS.get(method), "n_iter", None))
                steps = f"{kw['n_steps']} steps" if "n_steps" in kw else f"{n_iter} ADMM iterations"
                out[name, method, setting] = timeit(update, repeats, device)
                print_fn(f"  {name:<18}{method:<15}{str(setting):<14}{live['depth']:>3} slices, {steps:<20}"
                         f"{out[name, method, setting]:6.2f} s", flush=True)
    print_fn(f"slowest update: {max(out.values()):.2f} s")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dmbir_edu.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=positive_int_arg, default=64,
                   help="volume size (size^3; the prior runs out of distribution beyond 64)")
    p.add_argument("--sizes", type=positive_int_arg, nargs="+", default=None,
                   help="the cost curve: run the rows at each of these sizes (multiples of 8)")
    p.add_argument("--views", type=positive_int_arg, default=8, help="sparse-view CT: number of views")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(ROWS),
                   help="rows to time (dds_before: DDS as it was before, 50 steps and 64 slices per call)")
    p.add_argument("--dmbir-steps", type=positive_int_arg, default=ROWS["diffusionmbir"][1]["n_steps"],
                   help="DiffusionMBIR's diffusion steps")
    p.add_argument("--repeats", type=positive_int_arg, default=3,
                   help="runs per row, each in a fresh process (median)")
    p.add_argument("--device", type=device_arg, default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd network")
    p.add_argument("--live", action="store_true", help="only time one update of every live slider of the book")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(json.loads(a.one))))
        return
    if a.live:
        live_sliders(device=a.device, repeats=a.repeats)
        return
    ROWS["diffusionmbir"][1]["n_steps"] = a.dmbir_steps
    bench(a.size, a.views, a.methods, a.repeats, device=a.device, compile=a.compile, sizes=a.sizes)


if __name__ == "__main__":
    main()
