"""2D parallel-beam CT applied slice by slice: the forward model of sparse-view and limited-angle CT.

Explained in: chapter "Forward models" (book/01_forward_models.ipynb).
"""
import math
import warnings

import torch

from .operators import LinearOperator, check_finite, check_last_dims


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


def _footprints(u, v, n_det, n_bins):
    """Weights of a block of (pixel, view) pairs on their few consecutive detector bins.

    ``u`` (..., o, 1) and ``v`` (..., 1, o) broadcast to the sub-pixels' detector coordinates
    s = u + v, in bin units (the last two axes are the o x o sub-pixels of one pixel). Returns
    ``first`` (...), int32, the lowest bin the pixel reaches, and ``w`` (..., n_bins), float64:
    ``w[..., k]`` is the pixel's weight on bin ``first + k`` (zero where it reaches fewer bins).
    """
    o = u.shape[-2]
    s = u + v
    i0 = torch.floor(s)
    f = (s - i0).flatten(-2)                                   # linear-interpolation weight of bin i0 + 1
    # the lowest sub-pixel of a pixel is at a corner: floor(min s) without a reduction over s
    first = torch.floor(u.amin(-2, keepdim=True) + v.amin(-1, keepdim=True))
    k0 = (i0 - first).flatten(-2).long()                      # 0 <= k0 <= n_bins - 2
    area = 1.0 / o**2
    w = torch.zeros(*f.shape[:-1], n_bins, dtype=s.dtype, device=s.device)
    w.scatter_add_(-1, k0, area * (1 - f))                     # bin first + k0
    w[..., 1:].scatter_add_(-1, k0, area * f)                  # bin first + k0 + 1
    return first[..., 0, 0].to(torch.int32), w


def _system_matrix(n, angles, n_det, oversample, device=None, block_elements=2**20):
    """The pixel-driven projector as a pair of float64 sparse CSR matrices ``(S, S^T)``:
    S is (n_angles * n_det, n * n), row ``a * n_det + i`` = view a, bin i; column = pixel
    ``h * n + w``.

    Each pixel is split into ``oversample^2`` sub-pixels; each sub-pixel centre p is projected to
    s = p_1 cos(theta) + p_2 sin(theta) on the detector and its area is shared between the two
    nearest detector bins by linear interpolation.

    Construction (torch, on ``device``, no (row, column, value) triplet list). In bin units,
    t = s + n_det / 2 - 1/2, a sub-pixel at t gives 1 - frac(t) to bin floor(t) and frac(t) to
    bin floor(t) + 1 (each times 1 / oversample^2). The o = ``oversample`` sub-pixel centres of a
    pixel are offset from its centre by at most (o - 1) / (2 o) along each axis, so their t
    spread over at most (o - 1) / o * (|cos| + |sin|) <= (o - 1) / o * sqrt(2) < sqrt(2); the
    bins a pixel reaches, floor(t_min) .. floor(t_max) + 1, are therefore at most
    K = ceil((o - 1) / o * sqrt(2)) + 2 consecutive ones (2 for o = 1, 3 for o = 2 or 3, 4 above).
    So the weights of one (pixel, view) pair are a dense K-vector starting at bin floor(t_min),
    accumulated with ``scatter_add`` over the sub-pixels (``_footprints``).

    t is computed as (p_1 cos + n_det / 2 - 1/2) + p_2 sin, separably; floor(t_min) comes from
    the pixel's corner sub-pixel (rounding is monotone, so it is the least of the sub-pixels'
    floors). Against a NumPy triplet-list build of the same formula the matrices agree to
    1.4e-14 (64 x 64, 180 views; the other order of the sum moves t by an ulp).

    * S^T (rows = pixels): blocks of image rows, every view; the K-vectors come out in the order
      (pixel, view, k), i.e. already sorted by (row, column) of S^T: dropping the zeros and the
      bins off the detector gives its CSR arrays, with no sort. They are written in order into
      buffers of the bound's size (n^2 n_angles K; on the CPU the unwritten tail is never
      resident) and the used part is copied out.
    * S (rows = (view, bin)): blocks of views; the same K-vectors recomputed in the order (view,
      pixel, k). A stable sort of each block by row keeps the pixels ascending within a row; row
      lengths are known from S^T, so each block is written in place (no concatenation).

    Memory: the two matrices (12 bytes per nonzero each: float64 values, int32 indices) plus
    the temporaries of one block of ``block_elements`` (sub-pixel, view) pairs, about 0.1 GiB at
    the default 2^20 (100-140 bytes per pair); no global sort. Larger blocks mean fewer, larger tensor operations (faster where threads
    compete for cores), smaller ones less memory.
    """
    dev = torch.device("cpu") if device is None else torch.device(device)
    f64, i32 = torch.float64, torch.int32
    o, n_pix = int(oversample), n * n
    angles = torch.as_tensor(angles, dtype=f64).reshape(-1).to(dev)
    n_ang, n_rows = angles.numel(), angles.numel() * n_det
    K = math.ceil((o - 1) / o * math.sqrt(2)) + 2
    c = ((torch.arange(n * o, dtype=f64, device=dev) + 0.5) / o - n / 2).view(n, o)   # sub-pixel centres
    cos, sin = torch.cos(angles), torch.sin(angles)
    k = torch.arange(K, dtype=i32, device=dev)

    def keep(first, w):                                        # nonzero and on the detector
        bins = first[..., None] + k
        return bins, (w != 0) & (bins >= 0) & (bins < n_det)

    # S^T: axes (image row h, image column w, view, sub-pixel row, sub-pixel column)
    u = (c.view(n, 1, 1, o, 1) * cos.view(1, 1, -1, 1, 1)).add_(n_det / 2 - 0.5)
    v = c.view(1, n, 1, 1, o) * sin.view(1, 1, -1, 1, 1)
    view_start = (torch.arange(n_ang, dtype=i32, device=dev) * n_det).view(-1, 1)
    # at most K entries per (pixel, view): fill buffers of that size in order, keep the used part
    cols_t = torch.empty(n_pix * n_ang * K, dtype=i32, device=dev)
    vals_t = torch.empty(n_pix * n_ang * K, dtype=f64, device=dev)
    counts, nnz = torch.empty(n_pix, dtype=torch.int64, device=dev), 0
    rows_per_block = max(1, block_elements // (n * n_ang * o * o))
    for h0 in range(0, n, rows_per_block):
        first, w = _footprints(u[h0:h0 + rows_per_block], v, n_det, K)
        bins, ok = keep(first, w)
        col = torch.masked_select(bins + view_start, ok)
        cols_t[nnz:nnz + len(col)] = col
        vals_t[nnz:nnz + len(col)] = torch.masked_select(w, ok)
        counts[h0 * n:h0 * n + ok.shape[0] * n] = ok.sum((-2, -1)).flatten()
        nnz += len(col)
    del first, w, bins, ok, col
    cols_t, vals_t = cols_t[:nnz].clone(), vals_t[:nnz].clone()
    crow_t = torch.zeros(n_pix + 1, dtype=torch.int64, device=dev)
    torch.cumsum(counts, 0, out=crow_t[1:])

    # S: axes (view, image row, image column, sub-pixel row, sub-pixel column)
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=dev)
    torch.cumsum(torch.bincount(cols_t, minlength=n_rows), 0, out=crow[1:])
    cols, vals = torch.empty(nnz, dtype=i32, device=dev), torch.empty(nnz, dtype=f64, device=dev)
    u = (c.view(1, n, 1, o, 1) * cos.view(-1, 1, 1, 1, 1)).add_(n_det / 2 - 0.5)
    v = c.view(1, 1, n, 1, o) * sin.view(-1, 1, 1, 1, 1)
    pixel = torch.arange(n_pix, dtype=i32, device=dev).view(n, n, 1)
    views_per_block = max(1, block_elements // (n_pix * o * o))
    for a0 in range(0, n_ang, views_per_block):
        a1 = min(a0 + views_per_block, n_ang)
        first, w = _footprints(u[a0:a1], v[a0:a1], n_det, K)
        bins, ok = keep(first, w)
        row = torch.masked_select(bins + view_start[a0:a1, :, None, None], ok)
        order = torch.sort(row, stable=True).indices
        lo, hi = int(crow[a0 * n_det]), int(crow[a1 * n_det])
        cols[lo:hi] = torch.masked_select(pixel, ok)[order]
        vals[lo:hi] = torch.masked_select(w, ok)[order]

    if nnz >= 2**31:                                            # int32 indices unless they overflow
        crow, crow_t, cols, cols_t = crow.long(), crow_t.long(), cols.long(), cols_t.long()
    else:
        crow, crow_t = crow.to(i32), crow_t.to(i32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        S = torch.sparse_csr_tensor(crow, cols, vals, (n_rows, n_pix), check_invariants=False)
        ST = torch.sparse_csr_tensor(crow_t, cols_t, vals_t, (n_pix, n_rows), check_invariants=False)
    return S, ST


def _as_device(device):
    """torch.device with an explicit index for CUDA ('cuda' -> 'cuda:0'), as tensors report it."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def ramp_filter(n_det, dtype=torch.float64):
    """Ram-Lak filter in the Fourier domain, from the spatial kernel h_0 = 1/4,
    h_k = -1/(pi k)^2 for odd k, 0 for even k (detector spacing 1), zero-padded to a power of two
    >= 2 n_det so that the circular convolution does not wrap."""
    n_pad = max(64, 2 ** math.ceil(math.log2(2 * n_det)))
    k = torch.cat([torch.arange(0, n_pad // 2 + 1), torch.arange(-(n_pad // 2) + 1, 0)]).to(torch.float64)
    h = torch.where(k % 2 == 1, -1 / (math.pi * k) ** 2, torch.zeros_like(k))
    h[0] = 0.25
    return torch.fft.rfft(h).real.to(dtype), n_pad


class ParallelBeamCT(LinearOperator):
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
    No noise is added. ``final_correction`` is True: the released DiffusionMBIR ends CT with a
    Kaczmarz step.

    Device and dtype: S and S^T (float64) are built with torch on ``device`` (default CPU) and
    ``A.to(device)`` moves them (and ``angles``). An input of another dtype or device gets its
    own copy of the matrices, made once and cached per (device, dtype).

    Building S and S^T, 180 views (measured 2026-12-01 with ``scripts/measure_ct_build.py
    --threads 1``: AMD EPYC VM, 2 cores shared with other jobs, load ~5; median of 3 runs, peak
    RSS of a fresh process, 0.23 GiB of which is importing torch), this torch build vs the
    NumPy triplet-list build it replaced:

    =========  ==================  ==================
    size       this build          NumPy build
    =========  ==================  ==================
    64 x 64    0.67 s, 0.38 GiB    1.75 s, 0.72 GiB
    128 x 128  2.0 s, 0.55 GiB     7.9 s, 2.2 GiB
    256 x 256  6.5 s, 1.07 GiB     46 s, 8.0 GiB
    =========  ==================  ==================

    (S and S^T themselves take 0.69 GiB at 256 x 256.) With torch's default 2 threads on that
    loaded VM each parallel operation waited for a time slice (~12 ms): this build took 2.8 s,
    9.4 s, 40 s, the mostly single-threaded NumPy one 2.2 s, 5.3 s, 54 s.

    Explained in: chapter "Forward models" (book/01_forward_models.ipynb).
    """

    final_correction = True

    def __init__(self, image_size, angles, oversample=2, device=None):
        self.image_size = int(image_size)
        self.device = _as_device("cpu" if device is None else device)
        self.angles = torch.as_tensor(angles, dtype=torch.float64).reshape(-1).to(self.device)
        self.n_angles = len(self.angles)
        self.n_detectors = math.ceil(math.sqrt(2) * self.image_size)
        self.detector_spacing = 1.0
        self.oversample = int(oversample)
        self._d_theta = (math.pi / self.n_angles if self.n_angles < 2
                         else float(torch.diff(self.angles).median()))     # FBP's angular weight
        self.S, self.ST = _system_matrix(self.image_size, self.angles, self.n_detectors,
                                         self.oversample, self.device)
        self._cache = {(self.device, torch.float64): (self.S, self.ST)}

    @property
    def measurement_shape(self):
        return (self.n_angles, self.n_detectors)

    def to(self, device):
        """Move S, S^T and ``angles`` to ``device``; returns ``self``."""
        device = _as_device(device)
        self.S, self.ST = self._mats_for(device, torch.float64)
        self.angles, self.device = self.angles.to(device), device
        self._cache = {key: m for key, m in self._cache.items() if key[0] == device}
        return self

    def _mats_for(self, device, dtype):
        key = (device, dtype)
        if key not in self._cache:
            self._cache[key] = (self.S.to(device, dtype), self.ST.to(device, dtype))
        return self._cache[key]

    def _mats(self, t):
        return self._mats_for(t.device, t.dtype)

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
        return self.adjoint(q) * self._d_theta

    def __repr__(self):
        return f"ParallelBeamCT(image_size={self.image_size}, n_angles={self.n_angles}, n_detectors={self.n_detectors})"
