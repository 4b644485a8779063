"""2D parallel-beam CT applied slice by slice: the forward model of sparse-view and limited-angle CT.

Explained in: chapter "Forward models" (book/01_forward_models.ipynb).
"""
import math
import warnings

import numpy as np
import torch

from .operators import check_finite, check_last_dims


def sparse_view_angles(n_views):
    """``n_views`` projection angles (radians) uniform in [0, pi), endpoint excluded (as the paper)."""
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    return torch.arange(n_views, dtype=torch.float64) * math.pi / n_views


def limited_angle_angles(arc_degrees, n_views=None):
    """Angles (radians) uniform in [0, arc), endpoint excluded; by default one view per degree."""
    if not 0 < arc_degrees <= 180:
        raise ValueError(f"arc_degrees must be in (0, 180], got {arc_degrees}")
    n_views = int(round(arc_degrees)) if n_views is None else n_views
    return torch.arange(n_views, dtype=torch.float64) * math.radians(arc_degrees) / n_views


def _system_matrix(n, angles, n_det, oversample):
    """Sparse (n_angles * n_det, n * n) matrix of the pixel-driven projector, float64 CSR.

    Each pixel is split into ``oversample^2`` sub-pixels; each sub-pixel centre p is projected to
    s = p_1 cos(theta) + p_2 sin(theta) on the detector and its area is shared between the two
    nearest detector bins by linear interpolation.
    """
    c = (np.arange(n * oversample) + 0.5) / oversample - n / 2          # sub-pixel centres
    p1, p2 = np.meshgrid(c, c, indexing="ij")                          # p1 along H, p2 along W
    pix = (np.arange(n)[:, None, None, None] * n + np.arange(n)[None, None, :, None])
    pix = np.broadcast_to(pix, (n, oversample, n, oversample)).reshape(-1)
    w = 1.0 / oversample**2
    rows, cols, vals = [], [], []
    for a, th in enumerate(np.asarray(angles, dtype=np.float64)):
        s = (p1 * np.cos(th) + p2 * np.sin(th)).reshape(-1) + n_det / 2 - 0.5   # in bin units
        i0 = np.floor(s).astype(np.int64)
        f = s - i0
        for i, wt in ((i0, 1 - f), (i0 + 1, f)):
            ok = (i >= 0) & (i < n_det)
            rows.append(a * n_det + i[ok])
            cols.append(pix[ok])
            vals.append(w * wt[ok])
    idx = torch.from_numpy(np.stack([np.concatenate(rows), np.concatenate(cols)]))
    S = torch.sparse_coo_tensor(idx, torch.from_numpy(np.concatenate(vals)), (len(angles) * n_det, n * n),
                                check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return S.coalesce().to_sparse_csr()


def ramp_filter(n_det, dtype=torch.float64):
    """Ram-Lak filter in the Fourier domain, from the spatial kernel h_0 = 1/4,
    h_k = -1/(pi k)^2 for odd k, 0 for even k (detector spacing 1), zero-padded to a power of two
    >= 2 n_det so that the circular convolution does not wrap."""
    n_pad = max(64, 2 ** math.ceil(math.log2(2 * n_det)))
    k = torch.cat([torch.arange(0, n_pad // 2 + 1), torch.arange(-(n_pad // 2) + 1, 0)]).to(torch.float64)
    h = torch.where(k % 2 == 1, -1 / (math.pi * k) ** 2, torch.zeros_like(k))
    h[0] = 0.25
    return torch.fft.rfft(h).real.to(dtype), n_pad


class ParallelBeamCT:
    """Parallel-beam Radon transform of every axial slice: ``A(x)`` maps ``(..., H, W)`` to
    ``(..., n_angles, n_detectors)``.

    Geometry: square pixels of side 1 centred on the grid, image centre at the origin;
    ``n_detectors = ceil(sqrt(2) * image_size)`` bins of width 1 pixel centred on the rotation
    axis (91 for 64 x 64, 363 for 256 x 256 as in the official code), so every ray through the
    image is recorded. The detector coordinate of a point p = (p_1, p_2) (p_1 along H, p_2
    along W) is s = p_1 cos(theta) + p_2 sin(theta).

    The projector is pixel-driven with ``oversample``^2 sub-pixels per pixel and linear
    interpolation on the detector, stored as a sparse matrix S; ``A(x) = S x`` and
    ``A.adjoint(y) = S^T y`` exactly (the adjoint test holds to machine precision; the official
    code's back-projector is instead about pi / (2 n_views) times the adjoint).
    Device and dtype follow the input. No noise is added.

    Explained in: chapter "Forward models" (book/01_forward_models.ipynb).
    """

    def __init__(self, image_size, angles, oversample=2):
        self.image_size = int(image_size)
        self.angles = torch.as_tensor(angles, dtype=torch.float64).reshape(-1)
        self.n_angles = len(self.angles)
        self.n_detectors = math.ceil(math.sqrt(2) * self.image_size)
        self.detector_spacing = 1.0
        self.S = _system_matrix(self.image_size, self.angles.numpy(), self.n_detectors, oversample)
        self.ST = self.S.t().to_sparse_csr()
        self._cache = {}

    @property
    def measurement_shape(self):
        return (self.n_angles, self.n_detectors)

    def _mats(self, t):
        key = (t.device, t.dtype)
        if key not in self._cache:
            self._cache[key] = (self.S.to(t.device, t.dtype), self.ST.to(t.device, t.dtype))
        return self._cache[key]

    def __call__(self, x):
        n = self.image_size
        check_last_dims(x, (n, n), "x")
        lead = x.shape[:-2]
        X = x.reshape(-1, n * n).T                                   # (H*W, B)
        Y = self._mats(x)[0] @ X.contiguous()                        # (n_angles*n_det, B)
        return Y.T.reshape(*lead, *self.measurement_shape)

    def adjoint(self, y):
        """Exact adjoint S^T y (unfiltered back-projection): ``(..., n_angles, n_det)`` -> ``(..., H, W)``."""
        check_last_dims(y, self.measurement_shape, "y")
        lead = y.shape[:-2]
        X = self._mats(y)[1] @ y.reshape(-1, self.n_angles * self.n_detectors).T.contiguous()
        return X.T.reshape(*lead, self.image_size, self.image_size)

    def fbp(self, y):
        """Filtered back-projection: ramp-filter each projection, back-project, weight by the
        angular spacing. Exact (up to discretization) for many views over [0, pi)."""
        check_last_dims(y, self.measurement_shape, "y")
        check_finite(y, "y")
        H, n_pad = ramp_filter(self.n_detectors, y.dtype)
        q = torch.fft.irfft(torch.fft.rfft(y, n=n_pad) * H.to(y.device), n=n_pad)[..., : self.n_detectors]
        d_theta = math.pi / self.n_angles if self.n_angles < 2 else float(torch.diff(self.angles).median())
        return self.adjoint(q) * d_theta

    def __repr__(self):
        return f"ParallelBeamCT(image_size={self.image_size}, n_angles={self.n_angles}, n_detectors={self.n_detectors})"
