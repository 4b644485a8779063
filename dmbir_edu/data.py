"""Volumes: a procedural 3D phantom family, held-out seeds, and out-of-distribution volumes.

Every volume is a float32 tensor shaped ``(D, H, W)`` (axial slices first), values in [0, 1].

The phantom family is deliberately *not* piecewise constant: tissues carry smooth intensity
ramps and fine band-limited texture, vessels are thin bright tubes that wander and begin and
end along z, organs appear and disappear along z, and a thin high-contrast shell (skin, bone,
skull) surrounds everything. Total variation alone is then not the right prior, which is what
makes a learned 2D prior worth having.

Explained in: chapter "Score-based diffusion in 2D" (book/03_diffusion_2d.ipynb).
"""
import math

import numpy as np
import torch

TRAIN_SEEDS = range(0, 1_000_000)                  # the prior is trained on these
VALIDATION_SEEDS = tuple(range(9_000_000, 9_000_004))  # pick lam, rho, steps on these
TEST_SEEDS = tuple(range(10_000_000, 10_000_004))      # report numbers on these only


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


def phantom(seed, size=64, depth=None, kind=None):
    """One volume of the procedural phantom family.

    Parameters
    ----------
    seed : int
        Everything is drawn from ``torch.Generator().manual_seed(seed)``.
    size : int
        In-plane size H = W.
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
    t = _rand(g, 1.2, 2.5) * 2 / size
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
    vol = vol + inside * _rand(g, 0.02, 0.05) * _smooth_noise(z.shape, _rand(g, 0.7, 1.5), g)
    # Vessels: thin bright tubes along smooth curves x(z), y(z) that begin and end along z.
    n_vessels = int(torch.randint(2, 7, (), generator=g))
    for _ in range(n_vessels):
        x0, y0 = _rand(g, -0.5, 0.5), _rand(g, -0.35, 0.35)
        fx, fy, p = _rand(g, 0.5, 3), _rand(g, 0.5, 3), _rand(g, 0, 6.3)
        vx = x0 + 0.15 * torch.sin(fx * z + p)
        vy = y0 + 0.15 * torch.cos(fy * z + p)
        rad = _rand(g, 0.8, 2.0) * 2 / size
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
            plate = ((r > pr) & (r < pr + 3 / size)).float() * arc * _window(z, _rand(g, -1, 0), _rand(g, 0, 1))
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
    """ODL's 3D modified Shepp-Logan phantom, axial slices first, in [0, 1]."""
    import odl

    depth = size if depth is None else depth
    space = odl.uniform_discr([-1, -1, -1], [1, 1, 1], (size, size, depth))
    v = np.asarray(odl.core.phantom.shepp_logan(space, modified=True).data)   # (x, y, z)
    return _resample(np.transpose(v, (2, 1, 0))[::-1].copy(), size, depth)


def brain(size=64, depth=None):
    """The MNI152 T1 template (ships inside the nilearn wheel; no download), axial slices first.

    Cropped to the head, resampled to ``(depth, size, size)`` and normalized to [0, 1].
    Credit: the MNI ICBM152 non-linear 2009 template, Copyright (C) 1993-2009 Louis Collins,
    McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University
    (licence notice distributed with nilearn).
    """
    from nilearn.datasets import load_mni152_template

    depth = size if depth is None else depth
    v = np.asarray(load_mni152_template(resolution=2).get_fdata(), dtype=np.float32)  # (x, y, z)
    v = np.transpose(v, (2, 1, 0))[:, ::-1].copy()                 # (z, y, x), anterior up
    nz = np.nonzero(v > 0.05 * v.max())
    box = tuple(slice(a.min(), a.max() + 1) for a in nz)
    v = v[box]
    side = max(v.shape[1:])                                        # pad in-plane to a square
    pad = [(0, 0)] + [((side - s) // 2, side - s - (side - s) // 2) for s in v.shape[1:]]
    return _resample(np.pad(v, pad), size, depth)
