"""Train the 2D prior by denoising score matching on axial slices: phantoms, real CT, real MR, or yours.

    python -m dmbir_edu.train --run runs/phantom64 --steps 6000                  # resumable
    python -m dmbir_edu.train --run runs/ct64 --data ct --init phantom64 --steps 3000
    python -m dmbir_edu.train --run runs/mine --data path/to/volumes --modality ct
    python -m dmbir_edu.train --run runs/ct64 --export ct64                       # ship the EMA weights

Loss (EDM form of denoising score matching): with x_0 a clean slice, sigma drawn from the
noise distribution below and xi ~ N(0, I),

    L = E[ lambda(sigma) || D(x_0 + sigma xi; sigma) - x_0 ||^2 ],
    lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2.

Minimizing it makes D the MMSE denoiser, hence (D - x) / sigma^2 the score.
sigma is drawn half log-uniformly on [sigma_min, sigma_max] (every level the VE sampler
visits) and half from EDM's log-normal (ln sigma ~ N(-1.2, 1.2^2), where detail is learned).

Data (``--data``): ``phantom`` draws fresh phantoms (``data.TRAIN_SEEDS``); ``ct`` / ``mr`` take
the scan's own axial slices of the real training volumes ``data.REAL_SPLITS[modality]["train"]``;
a folder takes every ``.npy`` / ``.nii`` / ``.nii.gz`` / ``.nrrd`` volume in it (``--modality``
says how to normalize). A few real volumes are a tiny set, so real slices are augmented: flips,
a rotation of up to ``max_rotation`` degrees, a scaling of up to ``max_scale``, an intensity gain
of up to ``gain`` (``augment``). ``phantom_fraction`` of each batch can still be phantom slices.
Whole volumes are held out: the learning curve (``curve.csv``: denoising PSNR of the EMA
weights on fixed slices of the validation volumes, against images seen) never sees a training
volume.

Determinism: step k draws everything from a generator seeded by (seed, k) (``BATCH_SEED_STRIDE``;
phantom seeds 2k, 2k+1 of ``data.TRAIN_SEEDS`` for the phantom data), so a resumed run sees
exactly the batches an uninterrupted one would.

The steps of ``train``, in order: ``TrainingSettings`` (what a run is), ``training_slices``,
``run_record`` / ``write_record`` (``args.json``, checked on resume), ``new_model`` and
``resume`` (the network, its EMA and Adam), then per step ``optimisation_step``, with
``log_row``, ``evaluate`` (the learning curve, ``best.pt``) and ``save_checkpoint``. ``export``
writes the shipped weights and their card (``weight_card``, ``card_quality``).

Explained in: chapter "Score-based diffusion in 2D" (book/03_diffusion_2d.ipynb) and the
appendix "Training the prior".
"""
import argparse
import copy
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data
from .metrics import psnr
from .operators import device_arg, positive_int_arg
from .planes import PLANES, to_plane
from .prior import DEFAULT_UNET, SIGMA_DATA, WEIGHTS_DIR, Prior, load_prior, sha256
from .prior_quality import denoising_table


def phantom_slices(k, g, n, image_size, slices_per_volume=16, plane="axial", slab=1):
    """n random ``plane`` slices of fresh phantoms for step k: (n, H, W); with ``slab`` > 1, n runs
    of ``slab`` adjacent slices, (n, slab, H, W) (the channels of a slab prior)."""
    n_vol = -(-n // slices_per_volume)
    slices = []
    for j in range(n_vol):
        vol = to_plane(data.phantom((n_vol * k + j) % len(data.TRAIN_SEEDS), image_size), plane)
        first = torch.randint(0, vol.shape[0] - slab + 1, (slices_per_volume,), generator=g)
        slices.append(vol[first] if slab == 1 else torch.stack([vol[f:f + slab] for f in first.tolist()]))
    return torch.cat(slices)[:n]


def augment(x0, g, max_rotation=10.0, max_scale=0.1, gain=0.1, vflip=False):
    """A random left-right flip (and up-down with ``vflip``: not anatomy a scanner shows), a rotation
    in [-max_rotation, max_rotation] degrees, a zoom in [1 - max_scale, 1 + max_scale] and an
    intensity gain in [1 - gain, 1 + gain], one draw per slice
    (bilinear resampling, zeros outside, clipped to [0, 1]). x0: (B, H, W)."""
    B = x0.shape[0]
    u = lambda: 2 * torch.rand(B, generator=g) - 1                       # uniform on [-1, 1]
    theta, zoom, a = u() * max_rotation * torch.pi / 180, 1 + u() * max_scale, 1 + u() * gain
    flip = torch.where(torch.rand(2, B, generator=g) < 0.5, -1.0, 1.0)
    flip[1] = flip[1] if vflip else 1.0
    c, s = torch.cos(theta) / zoom, torch.sin(theta) / zoom
    R = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], 1) * flip.T[:, None, :]
    T = torch.cat([R, torch.zeros(B, 2, 1)], -1)                         # output -> input coordinates
    grid = torch.nn.functional.affine_grid(T, (B, 1, *x0.shape[-2:]), align_corners=False)
    x = torch.nn.functional.grid_sample(x0[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (a.reshape(B, 1, 1) * x[:, 0]).clamp(0, 1)


# Batch k of a run with seed s is drawn from a generator seeded by s * BATCH_SEED_STRIDE + k: a
# prime above any run's step count, so no two (seed, step) pairs share a generator.
BATCH_SEED_STRIDE = 1_000_003


def training_batch(k, seed, batch_size, image_size, slices=None, phantom_fraction=0.0, aug=None, plane="axial",
                   slab=1):
    """Batch k: (batch_size, slab, H, W) clean slices, and the generator that drew them.

    ``slices`` None: phantom slices of ``plane`` (runs of ``slab`` adjacent ones as channels) with
    random flips (the phantom family's own variety needs no more). Otherwise ``slices`` (N, H, W)
    are the real training slices: a random pick, augmented with ``augment(**aug)``, the first
    ``round(phantom_fraction * batch_size)`` replaced by phantoms."""
    g = torch.Generator().manual_seed(seed * BATCH_SEED_STRIDE + k)
    if slices is None:
        x0 = phantom_slices(k, g, batch_size, image_size, plane=plane, slab=slab)
        flip = torch.rand(2, generator=g)
        x0 = x0.flip(-1) if flip[0] < 0.5 else x0
        x0 = x0.flip(-2) if flip[1] < 0.5 else x0
        return (x0[:, None] if slab == 1 else x0), g
    x0 = augment(slices[torch.randint(0, slices.shape[0], (batch_size,), generator=g)], g, **(aug or {}))
    n_ph = round(phantom_fraction * batch_size)
    if n_ph:
        x0[:n_ph] = phantom_slices(k, g, n_ph, image_size)
    return x0[:, None], g


def training_slices(source, image_size, modality=None):
    """The axial training slices of ``source`` and the names of the volumes they come from.

    ``source``: "phantom" (returns None: drawn fresh each step), "ct" / "mr" (the real volumes of
    ``data.REAL_SPLITS[source]["train"]``) or a folder of volume files (``modality`` "ct" or "mr")."""
    if source == "phantom":
        return None, ["phantom family (data.TRAIN_SEEDS)"]
    if source in ("ct", "mr"):
        names = list(data.REAL_SPLITS[source]["train"])
        vols = [data.axial_slices(n, image_size) for n in names]
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise ValueError(f"--data must be phantom, ct, mr or a folder of volumes; {source!r} is none of these")
        files = sorted(f for f in folder.iterdir() if f.name.endswith(data.VOLUME_SUFFIXES))
        if not files:
            raise ValueError(f"{folder} holds no volume file ({', '.join(data.VOLUME_SUFFIXES)})")
        if modality is None:
            raise ValueError("training on your own volumes needs --modality ct (values in HU) or mr")
        names = [f.name for f in files]
        vols = [data.read_volume_file(f, modality, image_size) for f in files]
    return data.non_empty(torch.cat(vols)), names


def validation_slices(modality, image_size, n=32, plane="axial", slab=1):
    """n fixed slices of the validation volumes (``data.REAL_SPLITS[modality]["validation"]``, or the
    phantoms of ``data.VALIDATION_SEEDS`` for "phantom", in their ``plane``, as runs of ``slab``):
    what the learning curve is measured on."""
    if modality == "phantom":
        per_volume = -(-n // len(data.VALIDATION_SEEDS))
        return data.held_out_slices(data.VALIDATION_SEEDS, image_size, per_volume, plane, slab)[:n]
    return data.real_slices(modality, "validation", image_size, n)


CURVE_SIGMAS = (0.05, 0.1, 0.2)


def denoising_psnr(prior, x, sigmas=CURVE_SIGMAS, seed=0):
    """Mean PSNR (dB) of D(x + sigma xi; sigma) against x, per sigma; the noise is fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for sigma in sigmas:
        y = x + sigma * torch.randn(x.shape, generator=g)
        with torch.no_grad():
            out.append(float(np.mean([psnr(a, b) for a, b in zip(prior.denoise(y, sigma), x)])))
    return out


def sample_sigma(n, sigma_min, sigma_max, g):
    """Half log-uniform on [sigma_min, sigma_max], half EDM log-normal, clamped to the range."""
    u = torch.rand(n, generator=g)
    log_uniform = sigma_min * (sigma_max / sigma_min) ** u
    log_normal = torch.exp(-1.2 + 1.2 * torch.randn(n, generator=g))
    pick = torch.rand(n, generator=g) < 0.5
    return torch.where(pick, log_uniform, log_normal).clamp(sigma_min, sigma_max)


def dsm_loss(prior, x0, g):
    """Denoising score matching loss (EDM weighting) on a batch x0 of shape (B, 1, H, W).

    sigma and the noise come from the CPU generator ``g`` and move to the prior's device, so a
    run draws the same numbers on every device."""
    sigma = sample_sigma(x0.shape[0], prior.sigma_min, prior.sigma_max, g).to(prior.device)
    xi = torch.randn(x0.shape, generator=g).to(prior.device)
    x0 = x0.to(prior.device)
    D = prior(x0 + sigma.reshape(-1, 1, 1, 1) * xi, sigma)
    lam = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
    return (lam.reshape(-1, 1, 1, 1) * (D - x0) ** 2).mean()


@dataclass(frozen=True)
class TrainingSettings:
    """What a run is: the data, the network, the optimiser and the noise range. A run folder keeps
    them in ``args.json`` (``run_record``) and resumes only with the same ones.

    ``source``: see ``training_slices``; ``init``: the name of a shipped prior to start from
    (fine-tuning) instead of random weights seeded by ``seed``. ``lr`` is reached after a linear
    warm-up of ``warmup`` steps (``learning_rate``); ``ema_decay`` caps the EMA's beta
    (``ema_beta``). ``phantom_fraction`` and ``aug`` (keywords of ``augment``) apply to real data
    only: with phantoms ``aug`` is None.

    ``plane`` "coronal" / "sagittal": a prior of perpendicular slices (TPDM-style, chapter "Beyond TV
    along z"); ``slab`` k > 1: a prior of runs of k adjacent axial slices (DiffusionBlend-style,
    ``prior.SlabConvIn``), started from a 2D ``init`` by ``widen``; a batch is ``batch_size`` runs.
    Both on phantoms only: the phantoms are cubes, while a real volume's depth differs from its
    in-plane size (its coronal slices are not square).
    """
    source: str = "phantom"
    modality: str | None = None
    init: str | None = None
    config: dict = field(default_factory=lambda: DEFAULT_UNET)
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 200
    ema_decay: float = 0.999
    sigma_min: float = 0.01
    sigma_max: float = 40.0
    phantom_fraction: float = 0.0
    aug: dict | None = None
    seed: int = 0
    plane: str = "axial"
    slab: int = 1

    def __post_init__(self):
        if self.plane not in PLANES:
            raise ValueError(f"plane must be one of {PLANES}, got {self.plane!r}")
        if not (isinstance(self.slab, int) and 1 <= self.slab <= 9 and self.slab % 2):
            raise ValueError(f"slab must be an odd number of slices from 1 to 9, got {self.slab!r}")
        if (self.plane != "axial" or self.slab > 1) and self.source != "phantom":
            raise ValueError("--plane and --slab train on phantoms only (--data phantom): a real volume's depth "
                             "differs from its in-plane size, so its coronal slices are not square")
        object.__setattr__(self, "aug", dict(self.aug or {}) if self.source != "phantom" else None)

    @property
    def validation_modality(self):
        """The modality ("phantom", "ct" or "mr") whose validation volumes the learning curve is measured on."""
        return self.source if self.source in ("ct", "mr", "phantom") else self.modality


def validation_volumes(modality):
    """The names of the volumes behind ``validation_slices(modality, ...)``, for ``args.json``."""
    if modality == "phantom":
        return [f"phantoms of data.VALIDATION_SEEDS {list(data.VALIDATION_SEEDS)}"]
    return list(data.real_names(modality, "validation"))


def run_record(s, steps, slices, names):
    """What ``args.json`` holds: ``steps``, the settings ``s``, and the volumes trained on
    (``names``, ``slices`` from ``training_slices``) and validated on. ``plane`` and ``slab`` are
    left out at their defaults (runs started before these options have neither key)."""
    record = {"steps": steps} | {f.name: getattr(s, f.name) for f in fields(s)} | {"source": str(s.source)}
    plane, slab = record.pop("plane"), record.pop("slab")
    record |= dict(train_volumes=names, train_slices=None if slices is None else int(slices.shape[0]),
                   validation_volumes=validation_volumes(s.validation_modality))
    if plane != "axial" or slab > 1:
        record |= dict(plane=plane, slab=slab)
    return record


def write_record(run_dir, record):
    """Write ``record`` as ``run_dir/args.json``; a folder started with other settings (any key
    but ``steps`` differing) is refused."""
    path = run_dir / "args.json"
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in old if k != "steps" and json.dumps(old[k]) != json.dumps(record.get(k))]
        if changed:
            raise ValueError(f"{run_dir} was started with other settings ({', '.join(changed)}): resume it with "
                             f"the same arguments, or give a new --run")
    path.write_text(json.dumps(record, indent=1))


def new_model(s, device):
    """The network theta (weights seeded by ``s.seed``, or those of ``s.init`` widened to the slab),
    its EMA copy theta_ema (no gradients) and the Adam optimiser of theta."""
    torch.manual_seed(s.seed)
    prior = Prior(s.config, s.sigma_min, s.sigma_max, slab=s.slab).to(device)
    if s.init is not None:
        prior.net.load_state_dict(widen(load_prior(s.init).net.state_dict(), s.slab))
    ema = copy.deepcopy(prior).requires_grad_(False)
    return prior, ema, torch.optim.Adam(prior.parameters(), lr=s.lr)


def resume(run_dir, prior, ema, opt, device):
    """Load ``run_dir/checkpoint.pt`` into prior, ema and opt; returns its step (0 when the run is new)."""
    path = run_dir / "checkpoint.pt"
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=True, map_location=device)
    prior.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    return int(state["step"])


def save_checkpoint(run_dir, prior, ema, opt, step):
    """``run_dir/checkpoint.pt``: everything ``resume`` needs to go on after ``step``."""
    _save_replacing({"model": prior.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step},
                    run_dir / "checkpoint.pt")


def _save_replacing(state, path):
    """torch.save to ``path`` through a temporary file: an interrupted save leaves the old file whole."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def note_machine(run_dir, device):
    """Append this session's machine and device to ``run_dir/machine.txt`` (the card lists them)."""
    with (run_dir / "machine.txt").open("a") as f:
        f.write(f"{machine()}, device {device}\n")


def learning_rate(k, lr, warmup):
    """The learning rate of step k (from 0): lr * min(1, (k + 1) / warmup), a linear warm-up."""
    return lr * min(1.0, (k + 1) / warmup)


def ema_beta(k, ema_decay):
    """The EMA's beta at step k: min(ema_decay, (1 + k) / (10 + k)), short at first so that the
    EMA forgets the random initial weights."""
    return min(ema_decay, (1 + k) / (10 + k))


def optimisation_step(prior, ema, opt, k, s, slices):
    """Step k of a run with settings ``s``: draw batch k (``training_batch``), take an Adam step on
    ``dsm_loss`` at ``learning_rate`` with the gradient norm clipped to 1, then move the EMA,
    theta_ema <- beta theta_ema + (1 - beta) theta with beta = ``ema_beta``. Returns the loss."""
    x0, g = training_batch(k, s.seed, s.batch_size, prior.image_size, slices, s.phantom_fraction, s.aug, s.plane,
                           s.slab)
    for group in opt.param_groups:
        group["lr"] = learning_rate(k, s.lr, s.warmup)
    loss = dsm_loss(prior, x0, g)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        beta = ema_beta(k, s.ema_decay)
        for pe, p in zip(ema.parameters(), prior.parameters()):
            pe.lerp_(p, 1 - beta)
    return loss.item()


LOG_EVERY = 25                                   # steps between rows of log.csv
LOG_HEADER = "step,loss,images_per_s,elapsed_s"
CURVE_HEADER = "step,images_seen," + ",".join(f"psnr_sigma_{s}" for s in CURVE_SIGMAS)


def log_row(step, start, loss_avg, batch_size, elapsed):
    """A row of log.csv: the running mean of the loss, and the speed of this session (which began
    at step ``start``, ``elapsed`` seconds ago)."""
    return f"{step},{loss_avg:.5f},{(step - start) * batch_size / elapsed:.1f},{elapsed:.0f}"


def curve_point(ema, val, step, batch_size):
    """The learning curve at ``step``: the denoising PSNR of the EMA weights on the validation
    slices ``val`` per ``CURVE_SIGMAS``, and its row of curve.csv (step, images seen, the PSNRs)."""
    psnrs = denoising_psnr(ema.eval(), val)
    return psnrs, ",".join(map(str, [step, step * batch_size, *(f"{v:.3f}" for v in psnrs)]))


def open_curve(run_dir, ema, val, start, batch_size):
    """curve.csv opened for appending (``_appending``), with its point at step 0 when the run is new."""
    curve = _appending(run_dir / "curve.csv", CURVE_HEADER, start)
    if start == 0:
        _write_row(curve, curve_point(ema, val, 0, batch_size)[1])
    return curve


def evaluate(run_dir, curve, ema, val, step, batch_size):
    """Add the point at ``step`` to the learning curve; the EMA weights become ``best.pt`` when its
    mean PSNR beats every earlier point (early stopping on the validation slices)."""
    psnrs, row = curve_point(ema, val, step, batch_size)
    _write_row(curve, row)
    if np.mean(psnrs) > _best_so_far(run_dir / "curve.csv", step):
        _save_replacing({"ema": ema.state_dict(), "step": step}, run_dir / "best.pt")


def _write_row(f, row):
    f.write(row + "\n")
    f.flush()


def train(run_dir, steps, settings=None, *, device="cpu", checkpoint_every=100, eval_every=100, progress=True,
          **overrides):
    """Train (or resume) a prior on ``device`` up to step ``steps``; returns the EMA ``Prior`` (the
    weights used at inference).

    ``settings``: a ``TrainingSettings`` (default: its defaults), with ``overrides`` (its fields
    by name, e.g. ``source="ct", batch_size=16``) applied. ``run_dir`` gets ``args.json``, the
    checkpoint (every ``checkpoint_every`` steps and at the end), ``machine.txt``, the loss log
    ``log.csv`` and, unless ``eval_every`` is 0, the learning curve ``curve.csv`` (every
    ``eval_every`` steps, at checkpoints) and ``best.pt``.
    """
    s = replace(settings or TrainingSettings(), **overrides)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    slices, names = training_slices(s.source, s.config["sample_size"], s.modality)
    write_record(run_dir, run_record(s, steps, slices, names))
    prior, ema, opt = new_model(s, device)
    start = resume(run_dir, prior, ema, opt, device)
    note_machine(run_dir, device)
    val = validation_slices(s.validation_modality, prior.image_size, plane=s.plane, slab=s.slab) if eval_every else None
    log = _appending(run_dir / "log.csv", LOG_HEADER, start)
    curve = open_curve(run_dir, ema, val, start, s.batch_size) if val is not None else None
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc="train")
    t0, loss_avg = time.time(), None
    for k in bar:
        loss = optimisation_step(prior, ema, opt, k, s, slices)
        loss_avg = loss if loss_avg is None else 0.98 * loss_avg + 0.02 * loss
        bar.set_postfix(loss=f"{loss_avg:.4f}")
        if (k + 1) % LOG_EVERY == 0:
            _write_row(log, log_row(k + 1, start, loss_avg, s.batch_size, time.time() - t0))
        if (k + 1) % checkpoint_every == 0 or k + 1 == steps:
            if curve is not None and ((k + 1) % eval_every == 0 or k + 1 == steps):
                evaluate(run_dir, curve, ema, val, k + 1, s.batch_size)
            save_checkpoint(run_dir, prior, ema, opt, k + 1)
    log.close()
    if curve is not None:
        curve.close()
    return ema.eval()


def widen(state, slab):
    """A 2D prior's weights as a slab prior's starting point: its input convolution becomes the
    ``base`` of ``prior.SlabConvIn`` and the slab-mixing convolution starts at zero, so the slab
    prior starts as the 2D prior on each slice."""
    if slab == 1:
        return state
    out = {k: v for k, v in state.items() if not k.startswith("conv_in.")}
    w, b = state["conv_in.weight"], state["conv_in.bias"]
    out |= {"conv_in.base.weight": w, "conv_in.base.bias": b,
            "conv_in.mix.weight": w.new_zeros(slab * w.shape[0], slab, *w.shape[2:]),
            "conv_in.mix.bias": b.new_zeros(slab * b.shape[0])}
    return out


def _best_so_far(curve_csv, step):
    """The best mean validation PSNR of the learning curve before ``step`` (-inf if none)."""
    rows = [r.split(",") for r in Path(curve_csv).read_text().splitlines()[1:]]
    return max((float(np.mean([float(v) for v in r[2:]])) for r in rows if 0 < int(r[0]) < step), default=-np.inf)


def _appending(path, header, start):
    """A CSV log opened for appending; rows past ``start`` (written after the last checkpoint of an
    interrupted run) are dropped first, so a resumed run's log has each step once."""
    rows = path.read_text().splitlines()[1:] if path.exists() and start > 0 else []
    rows = [r for r in rows if int(r.split(",")[0]) <= start]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path.open("a")


def training_seconds(log_csv):
    """Wall time of a run from its loss log: a resumed run restarts the clock (elapsed_s falls), so
    the last elapsed_s of each session is summed."""
    rows = [r.split(",") for r in Path(log_csv).read_text().splitlines()[1:] if r]
    elapsed = [float(r[3]) for r in rows]
    return sum(e for e, nxt in zip(elapsed, elapsed[1:] + [-1.0]) if nxt < e)


def machine():
    """One line naming what a run or a benchmark ran on: CPU model, cores, the instructions that
    matter for bf16, torch version and threads (the card's ``machine``; ``bench`` prints it first)."""
    model, flags = platform.processor() or platform.machine() or "?", ""
    if os.path.exists("/proc/cpuinfo"):
        info = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), model)
        flags = " ".join(f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if f" {f}" in info)
    return (f"{model}, {os.cpu_count()} cores [{flags or 'no avx flags'}], torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


WEIGHTS_LICENCE = "MIT (the code's licence: LICENSE)"


def card_licence(card):
    """A card's ``licence``: the weights' terms and those of every volume behind them (trained on,
    chosen on, and the prior it started from, whose own card says the same of it)."""
    return dict(weights=WEIGHTS_LICENCE,
                trained_on={n: data.volume_terms(n) for n in card.get("train_volumes") or ["phantom family"]},
                chosen_on={n: data.volume_terms(n) for n in card.get("validation_volumes") or []},
                started_from=card.get("init"),
                note="whether trained weights derive from their training data is not settled; the terms of "
                     "every volume behind them are listed so that a user can decide")


def export_weights(run_dir, name, checkpoint):
    """Write the EMA weights of ``run_dir``'s last checkpoint ("last") or of ``best.pt`` ("best")
    as ``weights/<name>.safetensors`` (the keys of ``Prior.net``); returns that checkpoint."""
    from safetensors.torch import save_file

    if checkpoint not in ("last", "best"):
        raise ValueError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    state = torch.load(run_dir / ("checkpoint.pt" if checkpoint == "last" else "best.pt"), weights_only=True,
                       map_location="cpu")
    save_file({k.removeprefix("net."): v.contiguous() for k, v in state["ema"].items()},
              WEIGHTS_DIR / f"{name}.safetensors")
    return state


def card_modality(args):
    """The modality a run's prior is for, from its ``args.json``: "ct", "mr" or "phantom"."""
    source = args.get("source", "phantom")
    return source if source in ("ct", "mr") else args.get("modality") or "phantom"


def data_description(args):
    """The card's ``data``: what the run of ``args`` (its ``args.json``) trained on, in words."""
    plane, slab = args.get("plane", "axial"), args.get("slab", 1)
    if args.get("source", "phantom") == "phantom":
        what = (f"{plane} 64x64 slices" if slab == 1 else
                f"runs of {slab} adjacent {plane} 64x64 slices (the 2D network on each, prior.SlabConvIn mixing them)")
        return f"{what} of dmbir_edu.data.phantom(seed), seeds from 0 (2 volumes per step), seed={args['seed']}"
    a, n = args["aug"], args["config"]["sample_size"]
    return (f"the scan's own axial slices of {', '.join(args['train_volumes'])} "
            f"({args['train_slices']} slices) at {n}x{n}, augmented by random left-right flips"
            + (", up-down flips" if a.get("vflip") else "")
            + (f", rotations up to {a['max_rotation']:g} degrees" if a.get("max_rotation") else "")
            + (f", zooms up to {100 * a['max_scale']:g}%" if a.get("max_scale") else "")
            + (f", intensity gains up to {100 * a['gain']:g}%" if a.get("gain") else "")
            + f"; phantom fraction {args['phantom_fraction']:g}; seed {args['seed']}")


def weight_card(run_dir, name, args, state, checkpoint, command):
    """The card of the weights exported from ``run_dir`` (``args``: its ``args.json``; ``state``:
    the exported checkpoint), before its quality is measured (``quality`` empty) and its logs copied."""
    modality, step = card_modality(args), int(state["step"])
    machines = run_dir / "machine.txt"
    card = dict(name=name, unet=args["config"], sigma_min=args["sigma_min"], sigma_max=args["sigma_max"],
                modality=modality, plane=args.get("plane", "axial"), slab=args.get("slab", 1), steps=step,
                checkpoint=checkpoint, batch_size=args["batch_size"], images_seen=step * args["batch_size"],
                data=data_description(args), init=args.get("init"), train_volumes=args.get("train_volumes"),
                validation_volumes=args.get("validation_volumes"),
                test_volumes=list(data.REAL_SPLITS[modality]["test"]) if modality in data.REAL_SPLITS
                else [f"phantoms of data.TEST_SEEDS {list(data.TEST_SEEDS)}"],
                training_command=command, training_seconds=round(training_seconds(run_dir / "log.csv")),
                machine=sorted(set(machines.read_text().splitlines())) if machines.exists() else None,
                parameters=sum(v.numel() for v in state["ema"].values()),
                sha256=sha256(WEIGHTS_DIR / f"{name}.safetensors"), quality={}, loss_log=f"{name}.log.csv")
    card["licence"] = card_licence(card)
    return card


def copy_logs(run_dir, card):
    """Ship the run's loss log and learning curve beside the weights (``<name>.log.csv``,
    ``<name>.curve.csv``; the book plots them); the card names the curve."""
    shutil.copyfile(run_dir / "log.csv", WEIGHTS_DIR / card["loss_log"])
    if (run_dir / "curve.csv").exists():
        card["learning_curve"] = f"{card['name']}.curve.csv"
        shutil.copyfile(run_dir / "curve.csv", WEIGHTS_DIR / card["learning_curve"])


def compared_runs(name, compared):
    """The card's ``compared_runs``: the runs (folders) the choice was made against on the same
    validation slices, their settings, and copies of their curves (``<name>.<run>.curve.csv``)."""
    out = []
    for other in map(Path, compared):
        other_args = json.loads((other / "args.json").read_text())
        curve = f"{name}.{other.name}.curve.csv"
        shutil.copyfile(other / "curve.csv", WEIGHTS_DIR / curve)
        out.append(dict(run=other.name, aug=other_args["aug"], init=other_args["init"],
                        phantom_fraction=other_args["phantom_fraction"], learning_curve=curve))
    return out


def card_quality(card):
    """The card's ``quality``: ``prior_quality.denoising_table`` of the exported prior on the held-out
    slices of its own modality (and plane and slab)."""
    table = denoising_table(load_prior(card["name"]), modality=card["modality"], plane=card["plane"],
                            slab=card["slab"])
    return {"denoising_psnr_db": table,
            "measured_by": "dmbir_edu.prior_quality.denoising_table (TV weight tuned on validation "
                           "slices; validation and test slices of whole held-out volumes)"}


def write_card(card):
    (WEIGHTS_DIR / f"{card['name']}.json").write_text(json.dumps(card, indent=1) + "\n")


def export(run_dir, name, command, checkpoint="last", compared=()):
    """Write the EMA weights of ``run_dir`` as ``weights/<name>.safetensors``, its JSON card
    (``weight_card``), copies of the run's loss log and learning curve (``copy_logs``) and of the
    curves of the ``compared`` runs. The card is written before its "quality" is measured
    (``card_quality``): ``load_prior`` reads the prior from the written files. Returns the card."""
    run_dir = Path(run_dir)
    args = json.loads((run_dir / "args.json").read_text())
    state = export_weights(run_dir, name, checkpoint)
    card = weight_card(run_dir, name, args, state, checkpoint, command)
    copy_logs(run_dir, card)
    card["compared_runs"] = compared_runs(name, compared)
    write_card(card)
    card["quality"] = card_quality(card)
    write_card(card)
    return card


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dmbir_edu.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True,
                   help="folder for the checkpoint, args.json, the loss log and the learning curve; "
                        "a run with a checkpoint resumes")
    p.add_argument("--data", default="phantom",
                   help="phantom, ct or mr (the real training volumes of data.REAL_SPLITS), or a folder of "
                        ".npy / .nii / .nii.gz / .nrrd volumes")
    p.add_argument("--modality", choices=("ct", "mr"),
                   help="with --data FOLDER: ct (values in HU, or already in [0, 1]) or mr (any units); "
                        "also picks the validation volumes of the learning curve")
    p.add_argument("--init", metavar="PRIOR", help="start from this shipped prior (fine-tuning), e.g. phantom64")
    p.add_argument("--steps", type=positive_int_arg, default=6000,
                   help="train up to this step, counting the steps already in --run")
    p.add_argument("--batch-size", type=positive_int_arg, default=32, help="slices per training step")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate, after a 200-step linear warm-up")
    p.add_argument("--phantom-fraction", type=float, default=0.0,
                   help="with real data: this fraction of every batch is phantom slices")
    p.add_argument("--max-rotation", type=float, default=10.0, help="real data: largest rotation, degrees")
    p.add_argument("--max-scale", type=float, default=0.1, help="real data: largest zoom in or out (0.1: +-10%%)")
    p.add_argument("--gain", type=float, default=0.1, help="real data: largest intensity gain (0.1: x0.9 to x1.1)")
    p.add_argument("--eval-every", type=int, default=100,
                   help="steps between points of the learning curve (0: none); a multiple of 100 "
                        "(the checkpoint interval)")
    p.add_argument("--plane", choices=PLANES, default="axial",
                   help="the slices the prior learns: axial, or coronal / sagittal for a perpendicular prior "
                        "(phantoms only)")
    p.add_argument("--slab", type=int, choices=(1, 3, 5, 7, 9), default=1,
                   help="adjacent axial slices per sample, as channels (odd; >1: a slab prior, phantoms only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, the batches and the noise")
    p.add_argument("--device", type=device_arg, default="cpu",
                   help="torch device to train on, e.g. cuda (same batches on every device)")
    p.add_argument("--export", metavar="NAME",
                   help="do not train: write the EMA weights of --run to dmbir_edu/weights/NAME.safetensors, "
                        "with its card NAME.json, loss log and learning curve")
    p.add_argument("--checkpoint", choices=("last", "best"), default="last",
                   help="with --export: the last checkpoint, or the EMA weights at the best point of the learning "
                        "curve (best.pt: early stopping on the validation slices)")
    p.add_argument("--compared", nargs="*", default=[], metavar="RUN",
                   help="with --export: other runs (folders) this one was chosen against on the validation curve; "
                        "their curves ship beside the weights and the card lists their settings")
    p.add_argument("--command", default=None,
                   help="with --export: the training command the card records; "
                        "if not given, the export's own command line")
    a = p.parse_args(argv)
    if a.export:
        card = export(a.run, a.export, a.command or "python -m dmbir_edu.train " + " ".join(sys.argv[1:]), a.checkpoint,
                      a.compared)
        print(json.dumps(card, indent=1))
        return
    if not 0 <= a.phantom_fraction <= 1:
        p.error(f"--phantom-fraction must be in [0, 1], got {a.phantom_fraction}")
    if a.eval_every < 0 or a.eval_every % 100:
        p.error(f"--eval-every must be 0 or a positive multiple of 100 (the checkpoint interval), got {a.eval_every}")
    if not a.lr > 0:
        p.error(f"--lr must be > 0, got {a.lr}")
    if a.data not in ("phantom", "ct", "mr") and not Path(a.data).is_dir():
        p.error(f"--data must be phantom, ct, mr or a folder of volumes, got {a.data!r}")
    if (a.plane != "axial" or a.slab > 1) and a.data != "phantom":
        p.error("--plane and --slab train on phantoms only (--data phantom)")
    settings = TrainingSettings(source=a.data, modality=a.modality, init=a.init, batch_size=a.batch_size, lr=a.lr,
                                phantom_fraction=a.phantom_fraction,
                                aug=dict(max_rotation=a.max_rotation, max_scale=a.max_scale, gain=a.gain),
                                seed=a.seed, plane=a.plane, slab=a.slab)
    train(a.run, a.steps, settings, eval_every=a.eval_every, device=a.device)


if __name__ == "__main__":
    main()
