"""Measurements without the inverse crime: data simulated on a finer grid than the one that
reconstructs.

Reconstructing data made by the very operator that reconstructs (``y = A(x)`` on the same 64 x 64
grid) is the "inverse crime" (Kaipio and Somersalo 2005): the data then lie exactly in the model's
range, and a method's numbers come out better than on any scanner. Here the truth is a finer
volume ``x_fine``, ``factor`` times finer in-plane and ``factor_z`` times along z, and

* CT: its line integrals on a detector with ``factor`` bins for each bin of the coarse detector
  (the same rays, ``ParallelBeamCT(factor n, angles, n_detectors=factor m)``), in the units of the
  coarse pixel (divided by ``factor``), then each group of ``factor`` bins averaged (a bin
  integrates its width) and each group of ``factor_z`` thin slices averaged (a slice integrates
  its thickness);
* MRI: the centred orthonormal k-space of each fine slice, its central n x n frequencies (the
  coarse grid's) divided by ``factor`` (the orthonormal FFT's scale), thin slices averaged, then
  the mask.

The volume a reconstruction is scored against (``truth_and_data``): for CT ``coarse(x_fine)``,
the mean over each block of factor_z x factor x factor fine voxels, the coarse voxel's average;
for MRI the fully sampled scan on the coarse grid, i.e. the real part of the inverse FFT of the
central frequencies (Cartesian MRI measures Fourier samples: on the coarse grid they define the
image, and the finer grid changes the data only through the unpaired Nyquist line, the real-image
constraint and the slab average; ``book/01`` measures how much). ``factor = factor_z = 1`` is the
inverse crime again (the data are ``A(x)``), kept for the ablation.

Explained in: chapter "Forward models" (book/01_forward_models.ipynb), section "The inverse crime".
"""
import functools

import torch

from .ct import ParallelBeamCT
from .mri import CartesianMRI, fft2c
from .operators import check_positive_int


def coarse(x_fine, factor=2, factor_z=None):
    """The mean over blocks of ``factor_z`` x ``factor`` x ``factor`` voxels of a (D, H, W) volume
    (``factor_z`` default ``factor``): the coarse grid's voxel averages. D, H, W must divide."""
    factor_z = factor if factor_z is None else factor_z
    D, H, W = x_fine.shape
    if D % factor_z or H % factor or W % factor:
        raise ValueError(f"a volume of shape {tuple(x_fine.shape)} cannot be cut into blocks of "
                         f"{factor_z} x {factor} x {factor} voxels")
    return x_fine.reshape(D // factor_z, factor_z, H // factor, factor, W // factor, factor).mean((1, 3, 5))


def fine_operator(A, factor):
    """The CT operator of the finer grid that ``A`` (a ``ParallelBeamCT``) is simulated from: the
    same angles, ``factor`` times the pixels and the detector bins (built once per geometry)."""
    return _fine_ct(factor * A.image_size, tuple(A.angles.tolist()), factor * A.n_detectors, str(A.device))


@functools.lru_cache(maxsize=8)
def _fine_ct(n, angles, n_detectors, device):
    return ParallelBeamCT(n, angles, device=device, n_detectors=n_detectors)


def ct_data(A, x_fine, factor=2, factor_z=None, A_fine=None):
    """Sinograms for ``A`` (coarse grid) simulated from ``x_fine`` (module docstring)."""
    factor_z = factor if factor_z is None else factor_z
    A_fine = fine_operator(A, factor) if A_fine is None else A_fine
    y = A_fine(x_fine) / factor                                        # line integrals in coarse pixels
    y = y.unflatten(-1, (A.n_detectors, factor)).mean(-1)             # fine bins -> coarse bins
    return y.unflatten(0, (-1, factor_z)).mean(1)                     # thin slices -> coarse slices


def mri_data(M, x_fine, factor=2, factor_z=None):
    """k-space for ``M`` (a ``CartesianMRI`` on the coarse grid) simulated from ``x_fine``."""
    factor_z = factor if factor_z is None else factor_z
    n, N = M.image_size, x_fine.shape[-1]
    k = fft2c(x_fine.to(torch.complex64 if x_fine.dtype != torch.float64 else torch.complex128))
    lo = (N - n) // 2                                                 # the coarse grid's frequencies
    k = k[..., lo:lo + n, lo:lo + n] / factor
    k = k.unflatten(0, (-1, factor_z)).mean(1)
    return k * M.mask.to(k.device)


def truth_and_data(A, x_fine, factor=2, factor_z=None, crime=False):
    """(x, y): the coarse volume to score against and the noise-free data for the coarse operator
    ``A`` (CT or MRI), both from the fine truth ``x_fine`` (module docstring); with
    ``factor = factor_z = 1``, ``(x_fine, A(x_fine))``. ``crime=True``: the same x with the data
    ``A(x)``, the inverse crime on the same truth, so that the two differ in the data alone."""
    factor = check_positive_int(factor, "factor")
    factor_z = check_positive_int(factor if factor_z is None else factor_z, "factor_z")
    if factor == 1 and factor_z == 1:
        return x_fine, A(x_fine)
    if isinstance(A, ParallelBeamCT):
        x, y = coarse(x_fine, factor, factor_z), ct_data(A, x_fine, factor, factor_z)
    elif isinstance(A, CartesianMRI):
        full = CartesianMRI(torch.ones_like(A.mask), device=A.mask.device)
        k = mri_data(full, x_fine, factor, factor_z)                   # every coarse frequency
        x, y = full.adjoint(k).to(x_fine.dtype), k * A.mask.to(k.device)
    else:
        raise TypeError(f"no finer-grid simulation for {type(A).__name__}; pass factor=1 (the same operator)")
    return (x, A(x)) if crime else (x, y)
