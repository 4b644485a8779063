"""The experiments of the paper at teaching size: per-axis PSNR / SSIM tables on held-out volumes.

    python -m dmbir_edu.experiments sparse_view --views 8 4 2
    python -m dmbir_edu.experiments limited_angle --arc 90
    python -m dmbir_edu.experiments mri --accel uniform1d-x4 uniform1d-x8 vd2d-x8
    python -m dmbir_edu.experiments all
    python -m dmbir_edu.experiments all --data real        # the real CT / MR test volumes, noise-free and noisy
    python -m dmbir_edu.experiments defaults              # defaults vs a grid around them, VALIDATION
    python -m dmbir_edu.experiments steps --steps 100 300 1000 --depth 8   # step-count curve, VALIDATION
    python -m dmbir_edu.experiments beyond                # chapter "Beyond TV along z": ISCS, TPDM, slab prior
    python -m dmbir_edu.experiments beyond --split validation --iscs 2 4 8   # its choices, on VALIDATION

Every method runs with its own defaults (lam and rho scale with the operator); ``PARAMS`` holds
only per-experiment choices. Both were chosen on ``data.VALIDATION_SEEDS``, never on the test
volumes. Every number printed is measured by the run that prints it.

Explained in: chapter "DiffusionMBIR for sparse-view CT" (book/05_diffusionmbir.ipynb) and the
appendix "Results" (book/results.ipynb).
"""
import argparse
import functools
import itertools
import json
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from . import data, metrics, simulate, variants
from .ct import ParallelBeamCT, limited_angle_angles, poisson_noise, sparse_view_angles
from .mri import CartesianMRI, complex_gaussian_noise, uniform1d_mask, variable_density2d_mask
from .operators import device_arg, positive_int_arg, scaled_defaults
from .prior import DEFAULT_PRIORS, available_priors, load_prior
from .reconstruct import DIFFUSION_METHODS, PRESETS, reconstruct
from .reconstruct import METHODS as RECONSTRUCT_METHODS
from .tables import load_volumes, mean_psnr, paired, save_volumes, table, volume_key  # noqa: F401  (experiments.table etc.)


@dataclass(frozen=True)
class Row:
    """A table row: the ``reconstruct`` method it is (whose preset, prior and NFE count it has),
    the sampler that runs it when it is a variant (``variants``; None: ``reconstruct`` itself)
    and the keyword arguments that make it what it is; ``settings(A)``, if given, adds those that
    depend on the operator (the released constants). A value naming a shipped prior ("prior",
    "prior_perp") is loaded when the row runs."""
    method: str
    sampler: Callable = None
    kwargs: dict = field(default_factory=dict)
    settings: Callable = None


# Every row of the book's tables. "dmbir_reset" is the ablation of chapter 5 run as a row of its
# own: DiffusionMBIR with (v, u) restarted every step, so the z-penalty is quadratic (weight rho)
# and lam is unused; NOT the released algorithm, in the tables because at the step counts a CPU
# affords it beat the released method on the validation volumes (book appendix "Validation").
# The rows of chapter "Beyond TV along z" (book/10_beyond.ipynb) are each a DDS run that makes
# the slices agree in another way; ISCS_PERIOD (the ISCS anchor spacing) was chosen on the
# validation phantom (``beyond --split validation --iscs 2 4 8``), PERP_EVERY = 2 (the axial and
# the coronal prior alternate) is TPDM's idea as described, not tuned.
ISCS_PERIOD, PERP_EVERY = 2, 2
ROWS = {m: Row(m) for m in RECONSTRUCT_METHODS} | {
    "dmbir_reset": Row("diffusionmbir", variants.diffusion_mbir_variant, dict(reset_admm=True)),
    "dmbir_xyz": Row("diffusionmbir", variants.diffusion_mbir_variant, dict(axes="xyz")),   # 3D TV (chapter 5)
    "dmbir_no_tv": Row("diffusionmbir", variants.diffusion_mbir_variant, dict(axes=None)),  # lam = 0: no ADMM at all
    "dmbir_released": Row("diffusionmbir", variants.diffusion_mbir_variant, settings=variants.released_settings),
    "slicewise_cg1": Row("slicewise", kwargs=dict(n_cg=1)),     # slice-wise with DiffusionMBIR's CG budget
    "dds_2d": Row("dds", variants.dds_variant, dict(axes=None)),                  # DDS with no coupling: the control
    "dds_iscs": Row("dds", variants.dds_variant, dict(axes=None, iscs=ISCS_PERIOD)),  # ISCS instead of TV along z
    "dds_tv_iscs": Row("dds", variants.dds_variant, dict(iscs=ISCS_PERIOD)),      # ISCS and TV along z
    "tpdm": Row("dds", variants.dds_variant,                                      # a perpendicular prior
                dict(axes=None, prior_perp="coronal64", plane="coronal", perp_every=PERP_EVERY)),
    "slab": Row("dds", variants.dds_variant, dict(axes=None, prior="slab64")),    # runs of 3 slices, blended
}
TABLE_ROWS = ("fbp", "admm_tv", "slicewise", "diffusionmbir", "dmbir_reset", "dds")
BEYOND_ROWS = ("admm_tv", "slicewise", "diffusionmbir", "dds", "dds_2d", "dds_iscs", "dds_tv_iscs", "tpdm", "slab")


def method_of(label):
    """The ``reconstruct`` method behind a table row's label."""
    return ROWS[label].method


def needs_prior(labels):
    """True if any of these rows samples with the diffusion prior."""
    return any(method_of(m) in DIFFUSION_METHODS for m in labels)


# Every experiment of the book: task -> settings (views, arc in degrees, MRI masks). The command
# line's defaults and the appendix "Results" both read it.
JOBS = {"sparse_view": [8, 4, 2], "limited_angle": [90.0], "mri": ["uniform1d-x4", "uniform1d-x8", "vd2d-x8"]}

# Per (task family or task, row label) keyword arguments: only what is a genuine choice of an experiment,
# on top of each method's own defaults (which scale with the operator, so they serve every task).
# How the defaults and these choices were made, with every validation number: the book's
# appendix "Validation" (book/validation.md) and ``python -m dmbir_edu.experiments defaults``.
PARAMS = {
    # the chapter 5 ablation, with (v, u) restarted every step, takes an accurate x-update on CT
    # (5 CG iterations; the validation runs: book appendix "Validation")
    ("ct", "dmbir_reset"): dict(n_cg=5),
    # a 90 degree arc leaves the x-update ill-posed: one CG iteration per step (the released budget)
    # cannot bring the measured wedge back. On the validation chest aorta (scripts/validation_sweeps.py
    # la90, two repeats, the earlier ct64) DiffusionMBIR went from -3.77 dB to ADMM-TV at n_cg = 1 to
    # +0.02 at 20 (5 diverged: -17.5), DDS from -1.15 at its 5 to +0.57 at 50
    ("limited_angle", "diffusionmbir"): dict(n_cg=20),
    ("limited_angle", "dds"): dict(n_cg=50),
    # the baseline 3D ADMM-TV on MRI, tuned like the methods it is compared with: on the validation
    # head brain1 (scripts/validation_sweeps.py mri_tv_*; lam x {1, 4, 16, 64}, rho x {1, 10, 100} of
    # the ADMM_TV preset, ||M^T M|| = 1 for every mask) lam x 16, rho x 10 had the best mean over the
    # three masks: +0.99 dB at uniform 1D x4, +0.21 at x8, -0.02 at vd2d x8 over the preset
    ("mri", "admm_tv"): dict(lam=16 * PRESETS["admm_tv"].lam_rel, rho=10 * PRESETS["admm_tv"].rho_rel),
}

# What the paper reports (reference/dmbir-spec.md section 4): the ordering of methods, and the one
# table cell we could source (8-view sparse-view CT, axial, 4000 NFE, on AAPM 256 x 256 x 448).
PAPER = {
    "ordering": "DiffusionMBIR > slice-wise diffusion (Chung et al. / MCG / DPS) > ADMM-TV > FBP on every task "
                "and axis; slice-wise methods lose most on coronal and sagittal slices",
    "sparse_view 8, axial, DiffusionMBIR": {"psnr": 33.49, "ssim": 0.942},
}


def operator(task, setting, size=64, device="cpu"):
    """The forward operator of one experiment, on ``device``: views (sparse_view), arc degrees
    (limited_angle), or "uniform1d-x4" / "uniform1d-x8" / "vd2d-x8" (mri)."""
    if task == "sparse_view":
        return ParallelBeamCT(size, sparse_view_angles(int(setting)), device=device)
    if task == "limited_angle":
        return ParallelBeamCT(size, limited_angle_angles(float(setting)), device=device)
    if task == "mri":
        kind, _, accel = str(setting).partition("-x")
        if kind not in ("uniform1d", "vd2d") or not accel.replace(".", "", 1).isdigit():
            raise ValueError(f"unknown MRI setting {setting!r}; use e.g. 'uniform1d-x4' or 'vd2d-x8'")
        if kind == "uniform1d":
            return CartesianMRI(uniform1d_mask(size, float(accel), center_fraction=0.08, seed=0), device=device)
        return CartesianMRI(variable_density2d_mask(size, float(accel), seed=0), device=device)
    raise ValueError(f"unknown task {task!r}; choose one of {tuple(JOBS)}")


def test_set(task, size=64, n_volumes=4, seeds=None, depth=None, source="phantom", split="test", names=None):
    """Held-out volumes, a dict name -> (D, size, size) tensor.

    ``source="phantom"``: by default (``seeds=None``) the test set, i.e. the phantoms of
    ``data.TEST_SEEDS`` for CT and the MNI152 brain for MRI (as the paper's brain test volume, with
    a prior trained on other data); with ``seeds`` (e.g. ``data.VALIDATION_SEEDS``), the phantoms
    of those seeds for every task: there is only one brain, so MRI is validated on phantoms.
    ``source="real"``: the real volumes of ``data.REAL_SPLITS[modality][split]`` (``split``:
    "test" or "validation"), CT for the CT tasks and MR heads for MRI, with their own number of
    slices (near-isotropic voxels); ``names`` picks these volumes of the split instead of its first
    ``n_volumes`` (e.g. ``("abdomen",)``: the CT prior on anatomy it never saw). ``depth`` keeps only
    the central ``depth`` axial slices (same slice spacing; for quick runs)."""
    if source == "real":
        modality = "mr" if task == "mri" else "ct"
        split_names = data.real_names(modality, split)                            # those this machine has
        if names is not None and not set(names) <= set(data.REAL_SPLITS[modality][split]):
            raise ValueError(f"names {list(names)} are not all {split} volumes of this task: "
                             f"{list(data.REAL_SPLITS[modality][split])}")
        names = [n for n in split_names if n in names] if names is not None else split_names[:n_volumes]
        vols = {name: data.real_volume(name, size) for name in names}
    elif source != "phantom":
        raise ValueError(f"unknown data source {source!r}; choose 'phantom' or 'real'")
    elif names is not None:
        raise ValueError("names picks real volumes (source='real'); phantoms are picked by seeds")
    elif task == "mri" and seeds is None:
        vols = {"brain": data.brain(size)}
    else:
        vols = {f"phantom {s}": data.phantom(s, size) for s in (seeds or data.TEST_SEEDS)[:n_volumes]}
    if depth is not None:
        vols = {name: x[max(0, (len(x) - depth) // 2):][:depth] for name, x in vols.items()}   # all if fewer
    return vols


# Measurement noise: "none", or "realistic", the one level every 3D experiment also runs at:
# CT with I0 = 1e5 incident photons per ray (Poisson counts, then the log; the per-ray figure of
# simulation studies, but our bins are a 64-pixel grid's, some 6 mm: per mm^2 a low dose), MRI
# with complex Gaussian noise at 30 dB SNR (measured k-space RMS over noise RMS). A number
# instead is I0 (CT) or the SNR (MRI).
REALISTIC_NOISE = {"ct": 1e5, "mri": 30.0}


def noise_level(task, noise):
    """``noise`` ("none", "realistic", None or a number) as this task's number: I0 (CT) or SNR in dB
    (MRI); None when noise-free."""
    if noise in (None, "none"):
        return None
    if noise == "realistic":
        return REALISTIC_NOISE["mri" if task == "mri" else "ct"]
    return float(noise)


def noise_label(task, noise):
    level = noise_level(task, noise)
    return "noise-free" if level is None else f"SNR {level:g} dB" if task == "mri" else f"I0={level:.0e}"


def voxel_mm(name, size):
    """In-plane pixel size in mm of a ``test_set`` volume: a real volume's own, or for a phantom
    ``data.PHANTOM_FOV_MM / size``."""
    return data.real_volume_info(name, size)["spacing_mm"][1] if name in data.REAL else data.PHANTOM_FOV_MM / size


def measure(A, x, task, noise=None, pixel_mm=None, generator=None):
    """The measurement y = A(x) (the inverse crime: see ``simulate`` for data without it), with the
    task's noise model at ``noise`` (``add_noise``)."""
    return add_noise(A(x), A, task, noise, pixel_mm, generator)


def add_noise(y, A, task, noise=None, pixel_mm=None, generator=None):
    """Noise-free data ``y`` of ``A`` with the task's noise model at ``noise`` (see ``noise_level``):
    CT ``ct.poisson_noise`` with I0 photons per ray (``pixel_mm`` sets the physical attenuation),
    MRI ``mri.complex_gaussian_noise`` at the SNR."""
    level = noise_level(task, noise)
    if level is None:
        return y
    if task == "mri":
        return complex_gaussian_noise(y, level, A.mask, generator=generator)
    return poisson_noise(y, level, pixel_mm, generator=generator)


def method_kwargs(task, label, n_steps=None, defaults=False, setting=None, prior=None):
    """The keyword arguments of one table row: what makes the row what it is (``ROWS``), then,
    unless ``defaults``, its ``PARAMS`` and for the samplers ``n_steps``: the given one (DDS: at
    most its own default, DDS needs fewer steps, not more) or the method's default: for DDS the
    step count of (``prior``, task, ``setting``) in ``DDS_SETTING_STEPS`` where it has one (``prior``:
    the prior's name), else its preset's."""
    row = ROWS[label]
    kw = dict(row.kwargs)
    if defaults:
        return kw
    kw |= PARAMS.get(("mri" if task == "mri" else "ct", label), {}) | PARAMS.get((task, label), {})   # task refines
    if row.method in DIFFUSION_METHODS and "n_steps" not in kw:
        preset = PRESETS[row.method].n_steps
        if row.method == "dds":
            preset = DDS_SETTING_STEPS.get((prior, task, setting_key(setting)), preset)
        kw["n_steps"] = preset if n_steps is None else min(n_steps, preset) if row.method == "dds" else n_steps
    return kw


def setting_key(setting):
    """A setting as ``DDS_SETTING_STEPS`` keys it: a number of views or an arc as a float, a mask's name as it is."""
    try:
        return float(setting)
    except (TypeError, ValueError):
        return setting


def resolved_kwargs(task, setting, label, size=64, n_steps=None, defaults=False, A=None, prior=None):
    """What a table row runs with on this task's operator: ``method_kwargs`` with lam and rho
    made explicit (the method's preset scaled to the operator, where the row does not set them).
    ``A``: the task's operator if already built (it caches its scale); built here otherwise.
    ``prior``: the name of the prior it samples with (DDS's step count may depend on it)."""
    kw = method_kwargs(task, label, n_steps, defaults, setting, prior)
    if ROWS[label].settings is not None:
        A = operator(task, setting, size) if A is None else A
        kw = ROWS[label].settings(A) | kw
    preset = PRESETS.get(method_of(label))
    if preset is not None and preset.lam_rel is not None:
        A = operator(task, setting, size) if A is None else A
        kw["lam"], kw["rho"] = scaled_defaults(A, kw.get("lam"), kw.get("rho"), preset)
    return kw


def run_row(label, y, A, prior, kw, seed=0, progress=False, device="cpu"):
    """Reconstruct ``y`` as the row ``label`` does with keyword arguments ``kw`` (shipped priors
    named in ``kw`` are loaded on ``device``); the samplers' noise is seeded with ``seed``."""
    call = {k: load_prior(v, device=device) if k in ("prior", "prior_perp") else v for k, v in kw.items()}
    prior = call.pop("prior", prior)
    generator = torch.Generator().manual_seed(seed)
    row = ROWS[label]
    if row.sampler is None:
        return reconstruct(y, A, row.method, prior=prior, generator=generator, progress=progress, **call)
    return row.sampler(y, A, prior, generator=generator, progress=progress, **call)


@dataclass(frozen=True)
class Protocol:
    """How the numbers of a table are obtained: which volumes, which data, how many repeats.

    - ``size``: the reconstruction grid (slices are size x size).
    - ``fine``: the data are simulated on a grid ``fine`` times finer in-plane and along z
      (``simulate``; the truth scored against is the fine volume's coarse average); 1: the volumes
      on the reconstruction grid and data made by the reconstructing operator (the protocol of
      the project's tables before it had this field).
    - ``crime``: True keeps the truth of ``fine`` but makes the data with the reconstructing
      operator, ``A(x)``: the inverse crime, differing from the default in the data alone.
    - ``source``, ``split``, ``n_volumes``, ``seeds``, ``names``: the volumes (``test_set``):
      phantoms (``seeds``: phantom seeds, default the split's) or real volumes of
      ``data.REAL_SPLITS`` (``names``: these volumes of the split, default its first ``n_volumes``).
    - ``depth``: the central ``depth`` axial slices of each volume (None: all).
    - ``noise``: "none", "realistic" or a level (``noise_level``).
    - ``repeats``: the seeds of the samplers and of the measurement noise; every (volume, repeat)
      is one paired sample, so methods are compared on the same data and noise.
    - ``n_steps``: diffusion steps (None: each method's preset; DDS at most its preset's).
    - ``device``: where the operators, the prior and the volumes live.
    """
    size: int = 64
    fine: int = 2
    crime: bool = False
    source: str = "phantom"
    split: str = "test"
    n_volumes: int = 4
    seeds: tuple = None
    names: tuple = None
    depth: int = None
    noise: str = "none"
    repeats: tuple = (0,)
    n_steps: int = None
    device: str = "cpu"


# The protocol of every table the book reports (the appendix "Results", the closing tables of the
# chapters, the README's commands): data simulated on a twice finer grid, three repeats (sampler
# and noise seeds), the central 8 slices of each held-out volume. Validation choices are made
# before a table of this protocol is run, on ``split="validation"``.
REPORTED = Protocol(repeats=(0, 1, 2), depth=8)

# The cells of the reported tables, each run under REPORTED (``run_cell``) and saved as
# runs/evidence/NAME.json (``scripts/evidence.py``; read with ``tables.load_cell``). Sparse view on
# the first two held-out phantoms and on the chest lung2 (prior ct64), with realistic noise too; a
# 90 degree arc on the phantoms and on lung2; MRI on the head ch2 (prior mr64) and on the MNI152
# template (phantom64, as the phantom tables). Fixed before any of them was run; "NAME@old" is the
# same cell under OLD_PROTOCOL (the inverse crime, one repeat), for the comparison of the two.
@dataclass(frozen=True)
class Cell:
    """One cell of the reported tables: ``task`` and ``setting``, the volumes (``source``:
    "phantom" or "real", the first ``n_volumes`` test volumes of its split, or the test volumes
    ``names``), the rows (labels of ``ROWS``) and the noise level."""
    task: str
    setting: object
    source: str
    n_volumes: int
    rows: tuple
    noise: str = "none"
    names: tuple = None


CT_CELL_ROWS = ("fbp", "admm_tv", "slicewise", "slicewise_cg1", "diffusionmbir", "dmbir_released", "dds")
MR_CELL_ROWS = ("adjoint", "admm_tv", "slicewise", "slicewise_cg1", "diffusionmbir", "dds")
REPORTED_CELLS = {
    **{f"phantom_sv{v}": Cell("sparse_view", v, "phantom", 2, CT_CELL_ROWS) for v in (8, 4, 2)},
    **{f"lung2_sv{v}": Cell("sparse_view", v, "real", 1, CT_CELL_ROWS) for v in (8, 4, 2)},
    "lung2_la90": Cell("limited_angle", 90.0, "real", 1, CT_CELL_ROWS),
    **{f"mr_{m}": Cell("mri", m, "real", 1, MR_CELL_ROWS) for m in ("uniform1d-x4", "uniform1d-x8")},
    # added after the cells above had run, before any of these did
    "lung2_sv8_noisy": Cell("sparse_view", 8, "real", 1, CT_CELL_ROWS, "realistic"),
    "phantom_la90": Cell("limited_angle", 90.0, "phantom", 2, CT_CELL_ROWS),
    "mr_vd2d-x8": Cell("mri", "vd2d-x8", "real", 1, MR_CELL_ROWS),
    **{f"mni_{m}": Cell("mri", m, "phantom", 1, MR_CELL_ROWS) for m in ("uniform1d-x4", "uniform1d-x8")},
    # generalization the other way round (issue "Priors that beat TV on real anatomy"), added before
    # they ran: the chest prior ct64 on the abdomen, the MR prior mr64 on the MNI152 template
    "abdomen_sv8": Cell("sparse_view", 8, "real", 1, CT_CELL_ROWS, names=("abdomen",)),
    "mni_mr64_uniform1d-x4": Cell("mri", "uniform1d-x4", "real", 1, MR_CELL_ROWS, names=("mni152",)),
}
OLD_PROTOCOL = dict(fine=1, repeats=(0,))


def run_cell(name, protocol=REPORTED, n_steps=None, methods=None, **changes):
    """The rows of one reported cell (``REPORTED_CELLS[name]``; a suffix "@..." names a variant
    of the cell and is ignored here) under ``protocol``; ``methods`` replaces the cell's rows,
    ``n_steps`` its step counts, and ``changes`` (fields of ``Protocol``) the cell's volumes, noise
    or the protocol's other fields, e.g. ``depth=4`` for a quick check."""
    c = REPORTED_CELLS[name.split("@")[0]]
    changes = dict(source=c.source, n_volumes=c.n_volumes, names=c.names, noise=c.noise, n_steps=n_steps) | changes
    return run(c.task, [c.setting], list(methods or c.rows), protocol, progress=False, **changes)


def protocol_of(protocol=None, **changes):
    """``protocol`` (default ``Protocol()``) with ``changes`` (field names of ``Protocol``;
    ``seed=s`` is ``repeats=(s,)``); an unknown name is a TypeError naming it."""
    if "seed" in changes:
        changes["repeats"] = (changes.pop("seed"),)
    unknown = set(changes) - set(Protocol.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown protocol field(s) {sorted(unknown)}; fields: {list(Protocol.__dataclass_fields__)}")
    return replace(protocol or Protocol(), **changes)


def volumes(task, p):
    """name -> the fine volume (``p.fine`` times the grid) that a protocol's data and truth come from,
    on ``p.device``. Made once per process for each protocol's volumes (the chapters ask for the
    same ones many times; generating a 128^3 phantom or resampling a scan takes seconds)."""
    seeds = None if p.seeds is None else tuple(p.seeds)
    names = None if p.names is None else tuple(p.names)
    fine = _fine_volumes(task, p.size, p.fine, p.n_volumes, seeds, p.depth, p.source, p.split, names)
    return {name: x.to(p.device, copy=True) for name, x in fine.items()}     # a copy: the cache stays as made


@functools.lru_cache(maxsize=16)
def _fine_volumes(task, size, fine, n_volumes, seeds, depth, source, split, names):
    vols = test_set(task, size * fine, n_volumes, seeds, None if depth is None else depth * fine, source, split, names)
    return {name: x[:len(x) // fine * fine] for name, x in vols.items()}       # whole groups of thin slices


def run(task, settings, methods=TABLE_ROWS, protocol=None, *, prior=None, overrides=None, keep=False, defaults=False,
        progress=True, **changes):
    """Reconstruct every volume of the protocol with every row of ``methods`` (labels of ``ROWS``), at
    every repeat; returns a list of rows.

    ``protocol``: a ``Protocol`` (default ``Protocol()``), changed by ``changes`` (its field names,
    e.g. ``depth=8, repeats=(0, 1, 2)``; ``protocol_of``). Each row: task, setting, method (the
    label), volume, repeat, noise, per-axis psnr / ssim, flicker and dz_ratio (``metrics.along_z``),
    seconds, the kwargs used and NFE per slice (MRI: also the mask's effective acceleration on real
    images, ``mri.effective_acceleration``, beside the nominal one in the setting's name). The
    data of a (volume, repeat) are made once (``simulate.truth_and_data`` from the finer grid,
    then the noise drawn from a generator seeded
    ``repeat + NOISE_SEED_OFFSET``) and every method sees them; the samplers are seeded with the
    repeat. ``overrides`` maps a label to keyword arguments that replace its ``PARAMS``;
    ``defaults=True`` runs every method with its own defaults (no PARAMS); ``keep=True`` also
    stores the reconstruction (``row["x_hat"]``) and the truth (``row["x"]``).
    """
    p = protocol_of(protocol, **changes)
    prior = prior if prior is not None else (task_prior(task, p.source, p.device) if needs_prior(methods) else None)
    rows = []
    fine_vols = volumes(task, p)
    for setting in settings:
        A = operator(task, setting, p.size, p.device)
        for name, x_fine in fine_vols.items():
            x, y_clean = simulate.truth_and_data(A, x_fine, p.fine, crime=p.crime)
            for repeat in p.repeats:
                noise_g = torch.Generator().manual_seed(repeat + NOISE_SEED_OFFSET)
                y = add_noise(y_clean, A, task, p.noise, voxel_mm(name, p.size), noise_g)   # one y for every method
                for label in methods:
                    if label == "fbp" and not hasattr(A, "fbp"):
                        label = "adjoint"                                    # zero-filled for MRI
                    kw = method_kwargs(task, label, p.n_steps, defaults, setting, getattr(prior, "name", None))
                    kw |= (overrides or {}).get(label, {})
                    if ROWS[label].settings is not None:
                        kw = ROWS[label].settings(A) | kw
                    t0 = time.perf_counter()
                    x_hat = run_row(label, y, A, prior, kw, repeat, progress, p.device).float().cpu()
                    rows.append(dict(task=task, setting=setting, method=label, volume=name, repeat=repeat,
                                     noise=noise_label(task, p.noise), seconds=time.perf_counter() - t0, kwargs=kw,
                                     nfe_per_slice=nfe_per_slice(label, kw), fine=p.fine, crime=p.crime,
                                     **({"effective_acceleration": A.effective_acceleration} if task == "mri" else {}),
                                     **metrics.per_axis(x_hat, x.cpu()), **metrics.along_z(x_hat, x)))
                    if keep:
                        rows[-1].update(x_hat=x_hat, x=x.cpu())
    return rows


def nfe_per_slice(label, kw):
    """Network evaluations per axial slice of one row: DiffusionMBIR and slice-wise 2N - 1 (predictor
    and corrector, no corrector after the last step; 2N with the released ``corrector_sigma="current"``),
    DDS N (a slab prior too: each step denoises a partition into runs, one 2D evaluation per slice);
    0 without a prior."""
    method = method_of(label)
    if method not in DIFFUSION_METHODS:
        return 0
    n = kw["n_steps"]
    return n if method == "dds" else 2 * n - (kw.get("corrector_sigma", "next") == "next")


NOISE_SEED_OFFSET = 1_000_003   # the measurement noise's generator is seeded with seed + this


def task_prior(task, source="phantom", device="cpu"):
    """The prior a table uses when none is given: on real volumes the prior trained on real slices
    of the task's modality (ct64 / mr64), on phantoms (and the MNI152 brain) phantom64."""
    return load_prior(device=device, modality=prior_modality(task, source))


def prior_modality(task, source="phantom"):
    """"phantom", "ct" or "mr": which of ``prior.DEFAULT_PRIORS`` serves ``task`` on ``source``."""
    return "phantom" if source == "phantom" else ("mr" if task == "mri" else "ct")


def run_all(jobs=JOBS, methods=TABLE_ROWS, **kwargs):
    """``run`` for every task and its settings in ``jobs`` (default: all of the book's experiments);
    ``kwargs`` go to ``run``. The command line's tables and the appendix "Results" both come from here."""
    return [row for task, settings in jobs.items() for row in run(task, settings, methods, **kwargs)]


# The defaults check: each method with no arguments at all against the best of a small grid around
# its defaults, on a validation volume. lam and rho are multiplied (one at a time) by 1/4 and 4;
# the slice-wise sampler (no lam, no rho) tries 5 and 20 CG iterations besides its default 50.
DEFAULTS_GRID = {
    "admm_tv": [dict(lam=1 / 4), dict(lam=4), dict(rho=1 / 4), dict(rho=4)],
    "diffusionmbir": [dict(lam=1 / 4), dict(lam=4), dict(rho=1 / 4), dict(rho=4)],
    "dds": [dict(lam=1 / 4), dict(lam=4), dict(rho=1 / 4), dict(rho=4)],
    "slicewise": [dict(n_cg=5), dict(n_cg=20)],
}
DEFAULTS_METHODS = ("admm_tv", "slicewise", "diffusionmbir", "dds")


def grid_point(task, setting, method, point, size=64, A=None):
    """Absolute keyword arguments for a ``DEFAULTS_GRID`` point: lam / rho multipliers applied to
    the method's default lam and rho on this task's operator ``A`` (built if not given); other
    entries as they are."""
    if "lam" not in point and "rho" not in point:
        return dict(point)
    kw = resolved_kwargs(task, setting, method, size, defaults=True, A=A)
    return dict(lam=kw["lam"] * point.get("lam", 1), rho=kw["rho"] * point.get("rho", 1))


def defaults_check(jobs=JOBS, methods=DEFAULTS_METHODS, depth=8, n_volumes=1, size=64, prior=None, device="cpu",
                   print_fn=print, source="phantom", noise="none"):
    """Every method with bare defaults vs the best point of ``DEFAULTS_GRID`` (the default included),
    per task, on the VALIDATION volumes (phantom seeds, or with ``source="real"`` the real
    validation volumes); returns rows (task, setting, method, baseline, default, tuned, best point)
    and prints one line per cell as it goes. The baseline is FBP (CT) or zero-filled (MRI)."""
    common = dict(size=size, n_volumes=n_volumes, seeds=data.VALIDATION_SEEDS, depth=depth, progress=False,
                  prior=prior, device=device, defaults=True, source=source, split="validation", noise=noise)
    out = []
    for task, settings in jobs.items():
        for setting in settings:
            A = operator(task, setting, size)                  # its cached scale serves every grid point
            base = run(task, [setting], ["fbp"], **common)
            for method in methods:
                d = mean_psnr(run(task, [setting], [method], **common), method)
                tried = {"default": d}
                for point in DEFAULTS_GRID[method]:
                    kw = grid_point(task, setting, method, point, size, A)
                    tried[", ".join(f"{k} x{v:g}" if k in ("lam", "rho") else f"{k}={v}" for k, v in point.items())] = \
                        mean_psnr(run(task, [setting], [method], overrides={method: kw}, **common), method)
                best = max(tried, key=tried.get)
                out.append(dict(task=task, setting=setting, method=method, baseline=mean_psnr(base, base[0]["method"]),
                                default=d, tuned=tried[best], best=best, tried=tried))
                print_fn(f"{task:<14}{str(setting):<13}{noise_label(task, noise):<12}{method:<14} "
                         f"baseline {out[-1]['baseline']:6.2f}  default {d:6.2f}  tuned {tried[best]:6.2f} ({best})  "
                         f"gap {tried[best] - d:5.2f} dB   [" +
                         ", ".join(f"{k}: {v:.2f}" for k, v in tried.items()) + "]")
    return out


# The step-count curve compares the method as released ((z, u) carried over all steps) with the
# ablation that restarts (z, u) every step, and with the slice-wise sampler at the same steps.
STEP_VARIANTS = ("slicewise", "diffusionmbir", "dmbir_reset")


def step_curve(task, setting, steps, depth=None, n_volumes=1, size=64, prior=None, progress=False, device="cpu",
               source="phantom", noise="none"):
    """PSNR against the number of diffusion steps on the VALIDATION seeds (to choose the step count
    and carried vs reset (z, u) without looking at the test volumes); prints one line per run and
    returns {(n_steps, variant): mean PSNR over axes and volumes}."""
    prior = prior if prior is not None else task_prior(task, source, device)
    common = dict(size=size, n_volumes=n_volumes, seeds=data.VALIDATION_SEEDS, depth=depth, progress=progress,
                  device=device, source=source, split="validation", noise=noise)
    baseline = run(task, [setting], ["admm_tv"], **common)
    print(f"{task} {setting} {noise_label(task, noise)} admm_tv: mean PSNR {mean_psnr(baseline, 'admm_tv'):.2f} dB",
          flush=True)
    curve = {}
    for n_steps, label in itertools.product(steps, STEP_VARIANTS):
        rows = run(task, [setting], [label], n_steps=n_steps, prior=prior, **common)
        curve[n_steps, label] = mean_psnr(rows, label)
        axes = "  ".join(f"{a} {mean_psnr(rows, label, (a,)):.2f}" for a in metrics.AXES)
        print(f"{task} {setting} {noise_label(task, noise)} {n_steps:>5} steps  {label:<28} "
              f"mean PSNR {curve[n_steps, label]:.2f} dB  ({axes})  "
              f"{sum(r['seconds'] for r in rows) / len(rows):.0f} s/vol", flush=True)
    return curve


# The DDS step-count curve (chapter "Making it fast"): DDS's PSNR against its step count N and
# eta on the VALIDATION volumes of every task, each point paired with the 50-step run at the
# preset's eta on the same data and sampler seed. ``DDS_TOLERANCE``: how far below that a
# default may fall (dB, mean over the paired samples).
DDS_CURVE = dict(steps=(10, 15, 20, 30, 50), etas=(0.0, 0.5, 0.85, 1.0), reference=(50, 0.85))
DDS_JOBS = {"sparse_view": [8, 4, 2], "limited_angle": [90.0], "mri": ["uniform1d-x4", "uniform1d-x8"]}
DDS_TOLERANCE = 0.3
# DDS's step count for (prior, task, setting) where ``dds_step_curve`` found fewer steps than the
# preset's 50 within DDS_TOLERANCE, at eta 0.85 (no other eta needed fewer steps everywhere): the
# validation phantoms for phantom64, the chest aorta for ct64, the head brain1 for mr64
# (scripts/dds_steps.py; every number in the book's appendix "Validation"). Elsewhere (ct64 at 4
# views, every MRI mask with phantom64, mr64 at x4, the vd2d mask, which the curve did not run) the
# preset's 50.
DDS_SETTING_STEPS = {
    ("phantom64", "sparse_view", 8.0): 10, ("phantom64", "sparse_view", 4.0): 30,
    ("phantom64", "sparse_view", 2.0): 30, ("phantom64", "limited_angle", 90.0): 30,
    ("ct64", "sparse_view", 8.0): 30, ("ct64", "sparse_view", 2.0): 30, ("ct64", "limited_angle", 90.0): 15,
    ("mr64", "mri", "uniform1d-x8"): 30,
}


def dds_label(n_steps, eta):
    """The row label of one point of the DDS step curve."""
    return f"dds N={n_steps} eta={eta:g}"


def dds_step_curve(jobs=DDS_JOBS, steps=DDS_CURVE["steps"], etas=DDS_CURVE["etas"], source="phantom",
                   n_volumes=2, repeats=(0, 1), depth=8, device="cpu", print_fn=print):
    """DDS at every (N, eta) of ``steps`` x ``etas`` on the VALIDATION volumes of every task in
    ``jobs`` (``source`` "phantom": the validation phantoms; "real": the real validation volumes,
    with the task's real prior), under the reported protocol otherwise (data simulated on the
    finer grid, the central ``depth`` slices, every repeat). Returns ``run``'s rows, each labelled
    ``dds_label(N, eta)``; prints one line per point."""
    rows = []
    for task, settings in jobs.items():
        prior = task_prior(task, source, device)
        for setting, eta, n in itertools.product(settings, etas, steps):
            new = run(task, [setting], ["dds"], overrides={"dds": dict(n_steps=n, eta=eta)}, prior=prior,
                      seeds=data.VALIDATION_SEEDS, split="validation", source=source, n_volumes=n_volumes,
                      depth=depth, repeats=tuple(repeats), progress=False, device=device)
            for r in new:
                r["method"] = dds_label(n, eta)
            rows += new
            print_fn(f"{task} {setting} N={n:>3} eta={eta:<5g} mean PSNR {mean_psnr(new, new[0]['method']):.2f} dB  "
                     f"{sum(r['seconds'] for r in new) / len(new):.1f} s/run", flush=True)
    return rows


def choose_dds_steps(rows, tolerance=DDS_TOLERANCE, reference=DDS_CURVE["reference"]):
    """From ``dds_step_curve`` rows: for each eta, the smallest N whose paired PSNR difference to
    the ``reference`` (N, eta) is above -``tolerance`` dB in every (task, setting) of the rows.
    Returns {eta: (N or None, {cell: (difference, standard error, n)})}, the cells at that N (at
    the largest N tried when none qualifies)."""
    ref = dds_label(*reference)
    points = sorted({(r["kwargs"]["n_steps"], r["kwargs"]["eta"]) for r in rows})
    out = {}
    for eta in sorted({e for _, e in points}):
        tried = [n for n, e in points if e == eta]
        for n in tried:
            cells = paired(rows, dds_label(n, eta), ref)
            if all(d >= -tolerance for d, _, _ in cells.values()):
                out[eta] = (n, cells)
                break
        else:
            out[eta] = (None, paired(rows, dds_label(tried[-1], eta), ref))
    return out


def beyond(views=8, methods=None, n_volumes=1, split="test", iscs=(ISCS_PERIOD,), depth=None, seed=0, device="cpu",
           save=None, n_steps=None):
    """The table of chapter "Beyond TV along z": sparse-view CT at ``views`` on whole phantom volumes
    (the coronal prior needs the full 64^3 cube), every ``BEYOND_ROWS`` row; ``split``
    "validation" runs on ``data.VALIDATION_SEEDS`` (where ISCS_PERIOD was chosen) and reports
    each ISCS row once per anchor spacing in ``iscs``. ``n_steps``: fewer steps for quick runs
    (default: each sampler's own). Prints the table and NFE per slice."""
    methods = list(methods or BEYOND_ROWS)
    seeds = data.VALIDATION_SEEDS if split == "validation" else None
    common = dict(n_volumes=n_volumes, seeds=seeds, depth=depth, seed=seed, progress=False, device=device,
                  n_steps=n_steps)
    print(f"beyond: sparse-view CT, {views} views, {split} phantoms x {n_volumes}, noise-free, seed {seed}", flush=True)
    rows = []
    for label in methods:
        periods = iscs if "iscs" in ROWS[label].kwargs else [None]
        for P in periods:
            over = {label: dict(iscs=P)} if P is not None else None
            new = run("sparse_view", [views], [label], overrides=over, **common)
            mean = mean_psnr(new, label)
            for r in new:
                r["method"] = label if P is None or len(periods) == 1 else f"{label}_P{P}"
            rows += new
            print(f"  {rows[-1]['method']:<16} mean PSNR {mean:.2f} dB  "
                  f"{sum(r['seconds'] for r in new) / len(new):.0f} s/vol", flush=True)
    print(table(rows), flush=True)
    print("NFE per slice: " + ", ".join(f"{r['method']} {r['nfe_per_slice']}" for r in rows[::n_volumes]))
    if save:
        with open(save, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return rows


def check_settings(parser, a):
    """The settings argparse cannot check by type alone (rows, arcs, masks, noise levels):
    ``parser.error`` (one line, exit status 2) on the first bad one, before anything runs."""
    rows = sorted(ROWS)
    for label in a.methods or []:
        if label not in rows:
            parser.error(f"argument --methods: unknown row {label!r}; choose from {', '.join(rows)}")
    for arc in a.arc:
        if not 0 < arc <= 180:
            parser.error(f"argument --arc: an arc must be in (0, 180] degrees, got {arc:g}")
    for accel in a.accel:
        try:
            operator("mri", accel, size=a.size)
        except ValueError as e:
            parser.error(f"argument --accel: {e}")
    for noise in a.noise:
        try:
            noise_level("sparse_view", noise)
        except ValueError:
            parser.error(f"argument --noise: a level is 'none', 'realistic' or a number, got {noise!r}")


def parser():
    """The command line (module docstring), every option with its default."""
    p = argparse.ArgumentParser(
        prog="python -m dmbir_edu.experiments", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Per-axis PSNR / SSIM tables on held-out volumes (sparse_view, limited_angle, mri, all); "
                    "'defaults' compares each method's defaults with a grid around them and 'steps' draws PSNR "
                    "against the step count, both on VALIDATION volumes.")
    p.add_argument("task", choices=["sparse_view", "limited_angle", "mri", "all", "defaults", "steps", "beyond"],
                   help="what to run")
    p.add_argument("sub_task", nargs="?", default=None, choices=list(JOBS),
                   help="'defaults': only this task (default: every task); 'steps': its task (default: sparse_view; "
                        "its first setting is used)")
    p.add_argument("--views", type=positive_int_arg, nargs="+", default=JOBS["sparse_view"],
                   help="sparse-view CT: number of views")
    p.add_argument("--arc", type=float, nargs="+", default=JOBS["limited_angle"],
                   help="limited-angle CT: arc in degrees")
    p.add_argument("--accel", nargs="+", default=JOBS["mri"], help="MRI masks, e.g. uniform1d-x4 vd2d-x8")
    p.add_argument("--methods", nargs="+", default=None,
                   help=f"table rows (default: {' '.join(TABLE_ROWS)}; for 'defaults': {' '.join(DEFAULTS_METHODS)})")
    p.add_argument("--volumes", type=positive_int_arg, default=None,
                   help="number of held-out volumes per task (CT); default 4, and 1 for 'beyond' (whole 64^3 volumes)")
    p.add_argument("--steps", type=positive_int_arg, nargs="+", default=None,
                   help="diffusion steps (default: each method's PARAMS / default); several values for 'steps'")
    p.add_argument("--depth", type=positive_int_arg, default=None,
                   help="keep the central DEPTH axial slices (quick runs; 'defaults' uses 8 if not given)")
    p.add_argument("--size", type=positive_int_arg, default=64, help="volume size (the shipped prior is 64)")
    p.add_argument("--seed", type=int, nargs="+", default=[0],
                   help="repeats: seeds of the samplers and of the measurement noise (the reported protocol: 0 1 2)")
    p.add_argument("--fine", type=positive_int_arg, default=Protocol.fine,
                   help="simulate the data on a grid this many times finer (1: the volumes on the reconstruction grid "
                        "and data made by its operator, the inverse crime of the project's older tables)")
    p.add_argument("--crime", action="store_true",
                   help="keep the finer grid's truth but make the data with the reconstructing operator (an ablation)")
    p.add_argument("--device", type=device_arg, default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--data", choices=["phantom", "real"], default="phantom",
                   help="volumes: the procedural phantoms (and the MNI152 brain for MRI), or the real CT and MR "
                        "volumes (data.REAL_SPLITS: test volumes for tables, validation volumes for 'defaults' and "
                        "'steps')")
    p.add_argument("--split", choices=["test", "validation"], default="test",
                   help="with --data real, the tables' volumes: the test volumes, or the validation volumes "
                        "(reported as such: settings are chosen on them)")
    p.add_argument("--noise", nargs="+", default=["none", "realistic"],
                   help="measurement noise levels, each 'none', 'realistic' (CT I0=1e5 photons per ray, MRI SNR 30 dB) "
                        "or a number (I0 for CT, SNR in dB for MRI); 'defaults' and 'steps' use the first")
    p.add_argument("--prior", default=None, choices=available_priors(),
                   help="the 2D prior (a name of dmbir_edu.available_priors()); default: phantom64 on phantoms, "
                        "on real volumes the prior of the task's modality (ct64 for CT, mr64 for MRI)")
    p.add_argument("--iscs", type=positive_int_arg, nargs="+", default=None,
                   help=f"'beyond': ISCS anchor spacings to run (default: ISCS_PERIOD = {ISCS_PERIOD}); "
                        "several for the validation choice")
    p.add_argument("--per-volume", action="store_true", help="one table line per volume (default: mean over volumes)")
    p.add_argument("--save", default=None, help="also write every row (metrics, seconds, kwargs) to this JSON file")
    p.add_argument("--save-volumes", default=None,
                   help="tables: also write the reconstructions and the truths to this torch file (float16; "
                        "read it with load_volumes)")
    return p


def cli_defaults(a, jobs, methods, prior):
    """``defaults [task]``: each method's defaults against a grid around them, on validation."""
    defaults_check({t: s for t, s in jobs.items() if a.sub_task in (None, t)}, methods, depth=a.depth or 8,
                   size=a.size, prior=prior, device=a.device, print_fn=functools.partial(print, flush=True),
                   source=a.data, noise=a.noise[0])


def cli_beyond(a, jobs, methods, prior):
    """``beyond``: the table of chapter "Beyond TV along z" (8 views unless --views is given)."""
    views = a.views[0] if a.views != JOBS["sparse_view"] else 8
    beyond(views, a.methods, a.volumes or 1, a.split, a.iscs or [ISCS_PERIOD], a.depth, a.seed[0], a.device, a.save,
           a.steps[0] if a.steps else None)


def cli_steps(a, jobs, methods, prior):
    """``steps [task]``: PSNR against the step count on validation, at the task's first setting."""
    task = a.sub_task or "sparse_view"
    step_curve(task, jobs[task][0], a.steps or [100, 300, 1000], a.depth, prior=prior, device=a.device,
               source=a.data, noise=a.noise[0])


def cli_tables(a, jobs, methods, prior):
    """``sparse_view`` / ``limited_angle`` / ``mri`` / ``all``: the tables on the held-out volumes,
    at every noise level asked for; --save and --save-volumes write the rows and the volumes."""
    jobs = {task: settings for task, settings in jobs.items() if a.task in (task, "all")}
    which = a.split + " volumes" if a.data == "real" else "held-out phantoms; MRI: the MNI152 brain"
    print(f"data: {a.data} ({which}), noise: {' / '.join(a.noise)}, repeats (seeds) {a.seed}, "
          + ("inverse crime (data by the reconstructing operator)" if a.fine == 1 or a.crime else
             f"data simulated on a {a.fine}x finer grid"), flush=True)
    rows = [row for noise in a.noise for row in
            run_all(jobs, methods, size=a.size, n_volumes=a.volumes or 4, n_steps=a.steps[0] if a.steps else None,
                    depth=a.depth, repeats=tuple(a.seed), fine=a.fine, crime=a.crime, prior=prior, progress=False,
                    device=a.device, source=a.data, split=a.split, noise=noise, keep=bool(a.save_volumes))]
    print(table(rows, a.per_volume), flush=True)
    if a.save_volumes:
        save_volumes(rows, a.save_volumes)
    if a.save:
        with open(a.save, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    for (task, method), kw in {(r["task"], r["method"]): r["kwargs"] for r in rows}.items():   # what each row ran with
        print(f"{task} {method}: {kw}")


COMMANDS = {"defaults": cli_defaults, "beyond": cli_beyond, "steps": cli_steps}     # the rest: cli_tables


def main(argv=None):
    p = parser()
    a = p.parse_args(argv)
    check_settings(p, a)
    jobs = {"sparse_view": a.views, "limited_angle": a.arc, "mri": a.accel}
    methods = a.methods or list(DEFAULTS_METHODS if a.task == "defaults" else TABLE_ROWS)
    prior = load_prior(a.prior, device=a.device) if a.prior else None
    tasks = {"steps": [a.sub_task or "sparse_view"], "defaults": [a.sub_task] if a.sub_task else list(jobs),
             "all": list(jobs)}.get(a.task, [a.task])
    names = {DEFAULT_PRIORS[prior_modality(t, a.data)] for t in tasks}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {a.device}, prior "
          f"{(a.prior or ' / '.join(sorted(names))) if needs_prior(methods) else '-'}", flush=True)
    COMMANDS.get(a.task, cli_tables)(a, jobs, methods, prior)


if __name__ == "__main__":
    main()
