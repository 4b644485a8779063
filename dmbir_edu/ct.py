"""2D parallel-beam CT applied slice by slice: the forward model of sparse-view and limited-angle CT,
and the measurement noise of a CT scan (``poisson_noise``, ``gaussian_noise``).

Explained in: chapter "Forward models" (book/01_forward_models.ipynb).
"""
import math
import warnings

import torch

from .operators import (
    LinearOperator,
    as_float,
    check_finite,
    check_last_dims,
    check_number,
    check_positive_int,
    generator_device,
    randn_like,
)

# Attenuation of the package's CT volumes. They are CT numbers windowed linearly from
# [-1000, 1000] HU to [0, 1]: value v is HU = 2000 v - 1000, and HU = 1000 (mu - mu_water) / mu_water,
# so mu(v) = 2 mu_water v: 0 is air (mu = 0), 0.5 water, 1 is +1000 HU (dense bone, 2 x water).
MU_WATER_PER_MM = 0.0195
"""Linear attenuation coefficient of water, 1/mm, at an effective energy of about 70 keV.

Approximate: the NIST XCOM tables give a mass attenuation coefficient of about 0.19-0.20 cm^2/g
for water near 70 keV (0.206 at 60 keV, 0.184 at 80 keV), i.e. 0.019-0.020 /mm at 1 g/cm^3. A
real scanner's polychromatic beam has no single value; this one sets the scale of the noise."""

MU_UNIT_PER_MM = 2 * MU_WATER_PER_MM
"""The linear attenuation coefficient, in 1/mm, of a voxel of value 1 (+1000 HU), so that mu(v) = MU_UNIT_PER_MM * v."""

MIN_COUNTS = 0.5
"""Counts below this are raised to it before the log transform of ``poisson_noise`` (zero counts
would give an infinite line integral). Half a photon keeps 0 counts above 1 count in attenuation."""


def sparse_view_angles(n_views):
    """``n_views`` projection angles (radians) uniform in [0, pi), endpoint excluded (as the paper)."""
    n_views = check_positive_int(n_views, "n_views")
    return torch.arange(n_views, dtype=torch.float64) * math.pi / n_views


def limited_angle_angles(arc_degrees, n_views=None):
    """Angles (radians) uniform in [0, arc), endpoint excluded; by default one view per degree."""
    if not 0 < arc_degrees <= 180:
        raise ValueError(f"arc_degrees must be in (0, 180], got {arc_degrees}")
    n_views = int(round(arc_degrees)) if n_views is None else check_positive_int(n_views, "n_views")
    return torch.arange(n_views, dtype=torch.float64) * math.radians(arc_degrees) / n_views


def _footprints(t, n_det, K):
    """Weights of N (pixel, view) pairs on K consecutive detector bins, from the detector
    coordinates ``t`` (N, o^2) of each pixel's o^2 sub-pixels, in bin units. Returns ``bins``
    (N, K), int64, the K bins from the lowest one the pixel reaches, ``w`` (N, K), float64, its
    weight on each, and ``keep`` (N, K): the weight is nonzero and the bin on the detector."""
    first = t.amin(1, keepdim=True).floor()            # lowest bin reached
    k = (t.floor() - first).long()                     # each sub-pixel's bin floor(t), from first
    f = t - t.floor()                                  # its share of bin floor(t) + 1
    w = torch.zeros(len(t), K, dtype=t.dtype, device=t.device)
    w.scatter_add_(1, torch.cat([k, k + 1], 1), torch.cat([1 - f, f], 1) * (1 / t.shape[1]))
    bins = first.long() + torch.arange(K, device=t.device)
    return bins, w, (w != 0) & (bins >= 0) & (bins < n_det)


def _system_matrix(n, angles, n_det, oversample, device=None, block_elements=2**20):
    """The pixel-driven projector as a pair of float64 sparse CSR matrices ``(S, S^T)``:
    S is (n_angles * n_det, n * n), row ``a * n_det + i`` = view a, bin i; column = pixel
    ``h * n + w``.

    Each pixel is split into o x o sub-pixels (o = ``oversample``); each sub-pixel centre p is
    projected to s = p_1 cos(theta) + p_2 sin(theta) on the detector and its area 1 / o^2 is
    shared between the two nearest bins by linear interpolation: in bin units,
    t = s + n_det / 2 - 1/2, bin floor(t) gets 1 - frac(t) and bin floor(t) + 1 gets frac(t).

    How many bins can one pixel reach? Its sub-pixel centres are at most (o - 1) / (2 o) from
    its centre along each axis, so their t spread over at most
    (o - 1) / o * (|cos| + |sin|) <= (o - 1) / o * sqrt(2); the bins reached, floor(t_min) ..
    floor(t_max) + 1, are at most K = ceil((o - 1) / o * sqrt(2)) + 2 consecutive ones (2 for
    o = 1, 3 for o = 2 or 3, 4 above). So for one view a pixel's weights are a dense K-vector
    starting at bin floor(t_min), summed over its sub-pixels with one ``scatter_add``
    (``_footprints``).

    CSR wants the entries sorted by row, then column; no (row, column) pair repeats here.
    S is built a few whole views at a time: their rows come after the previous views', so only
    a step's own entries are sorted by row (a stable sort: the pixels stay ascending within a
    row). S^T is built a few whole image rows at a time, in the order (pixel, view, k), which
    is already sorted. A step covers about ``block_elements`` sub-pixel evaluations; the result
    does not depend on it (fewer, larger steps are faster where threads wait for cores).

    Indices are int64 while building (torch's index type) and int32 in the result (unless
    nnz >= 2^31): 12 instead of 16 bytes per nonzero, and the CPU sparse products were 1.2-1.5 x
    faster (measured at 128 x 128). Memory: S, S^T, the entry lists of the one being built and
    one step's temporaries.
    """
    dev = torch.device("cpu" if device is None else device)
    o, n_pix = int(oversample), n * n
    K = math.ceil((o - 1) / o * math.sqrt(2)) + 2
    angles = torch.as_tensor(angles, dtype=torch.float64).reshape(-1).to(dev)
    n_ang = len(angles)
    c = (torch.arange(n * o, dtype=torch.float64, device=dev) + 0.5) / o - n / 2   # sub-pixel centres
    # t of sub-pixel (i, j) of pixel (h, w) in view a is u[a, h, i] + v[a, w, j]
    u = (c * torch.cos(angles)[:, None] + (n_det / 2 - 0.5)).view(n_ang, n, o)
    v = (c * torch.sin(angles)[:, None]).view(n_ang, n, o)

    def csr(parts, shape):                              # parts: (row lengths, columns, values)
        lengths, cols, vals = (torch.cat(x) for x in zip(*parts))
        crow = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        idx = torch.int32 if len(vals) < 2**31 else torch.int64
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(crow.to(idx), cols.to(idx), vals, shape, check_invariants=False)

    parts, step = [], max(1, block_elements // (n_pix * o * o))
    for a in range(0, n_ang, step):                     # S: views a, a + 1, ...; pairs (view, pixel)
        t = u[a:a + step, :, None, :, None] + v[a:a + step, None, :, None, :]       # (view, h, w, i, j)
        bins, w, keep = _footprints(t.reshape(-1, o * o), n_det, K)
        q = torch.arange(len(bins), device=dev)[:, None]                             # pair number
        rows = (q // n_pix * n_det + bins)[keep]                                     # row - a * n_det
        order = torch.sort(rows, stable=True).indices
        parts.append((torch.bincount(rows, minlength=len(t) * n_det),
                      (q % n_pix).expand_as(bins)[keep][order], w[keep][order]))
    S = csr(parts, (n_ang * n_det, n_pix))

    parts, step = [], max(1, block_elements // (n * n_ang * o * o))
    for h in range(0, n, step):                         # S^T: image rows h, h + 1, ...; pairs (pixel, view)
        t = u[:, h:h + step, None, :, None] + v[:, None, :, None, :]
        bins, w, keep = _footprints(t.permute(1, 2, 0, 3, 4).reshape(-1, o * o), n_det, K)
        q = torch.arange(len(bins), device=dev)[:, None]
        parts.append((keep.view(-1, n_ang * K).sum(1), (q % n_ang * n_det + bins)[keep], w[keep]))
    return S, csr(parts, (n_pix, n_ang * n_det))


def _as_device(device):
    """torch.device with an explicit index for CUDA ('cuda' -> 'cuda:0'), as tensors report it."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _work_dtype(dtype):
    """The dtype CT computes in: float32 for float16 / bfloat16 (torch's sparse CSR products and its
    CPU FFTs have no half-precision kernels), else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


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
    image is recorded; ``n_detectors`` sets another count (at least that many: the finer
    simulation grid of ``simulate`` takes twice the coarse operator's bins, so that pairs of its
    bins make one coarse bin). The detector coordinate of a point p = (p_1, p_2) (p_1 along H, p_2
    along W) is s = p_1 cos(theta) + p_2 sin(theta).

    The projector is pixel-driven with ``oversample``^2 sub-pixels per pixel and linear
    interpolation on the detector, stored as a sparse matrix S; ``A(x) = S x`` and
    ``A.adjoint(y) = S^T y`` exactly (the adjoint test holds to machine precision; the official
    code's back-projector is instead about pi / (2 n_views) times the adjoint).
    No noise is added. ``final_correction`` is True: the released DiffusionMBIR ends CT with a
    Kaczmarz step.

    Device and dtype: S and S^T (float64) are built with torch on ``device`` (default CPU) and
    ``A.to(device)`` moves them (and ``angles``). An input of another dtype or device gets its
    own copy of the matrices, made once and cached per (device, dtype). The result has the
    input's device and dtype, except integer (or bool) input, which is converted to torch's
    default float dtype (float32) first. float16 and bfloat16 inputs are computed in float32
    (torch's sparse CSR products have no half-precision kernels on the CPU) and returned in
    their own dtype, so a volume saved in float16 can be projected as it is.

    Building S and S^T takes about a second at 64 x 64 and grows with the image side; its time and
    memory are measured by ``scripts/measure_ct_build.py`` (figures: the book's page "How long
    each chapter takes").

    Explained in: chapter "Forward models" (book/01_forward_models.ipynb).
    """

    final_correction = True

    def __init__(self, image_size, angles, oversample=2, device=None, n_detectors=None):
        self.image_size = check_positive_int(image_size, "image_size")
        self.oversample = check_positive_int(oversample, "oversample")
        self.device = _as_device("cpu" if device is None else device)
        self.angles = torch.as_tensor(angles, dtype=torch.float64).reshape(-1).to(self.device)
        if len(self.angles) == 0:
            raise ValueError("angles must hold at least one projection angle (radians), got none")
        check_finite(self.angles, "angles")
        self.n_angles = len(self.angles)
        least = math.ceil(math.sqrt(2) * self.image_size)
        self.n_detectors = least if n_detectors is None else check_positive_int(n_detectors, "n_detectors")
        if self.n_detectors < least:
            raise ValueError(f"n_detectors must be at least ceil(sqrt(2) * image_size) = {least}, so that every ray "
                             f"through the image is recorded; got {n_detectors}")
        self.detector_spacing = 1.0
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

    def _apply(self, which, t, n_in, out_shape):
        """S t (``which`` 0) or S^T t (1), slice by slice; half precision is computed in float32."""
        work = _work_dtype(t.dtype)
        T = t.reshape(-1, n_in).T.to(work).contiguous()                         # (n_in, B)
        Y = self._mats_for(t.device, work)[which] @ T                           # (n_out, B)
        return Y.T.to(t.dtype).reshape(*t.shape[:-2], *out_shape)

    def __call__(self, x):
        n = self.image_size
        check_last_dims(x, (n, n), "x")
        return self._apply(0, as_float(x, "x"), n * n, self.measurement_shape)

    def adjoint(self, y):
        """Exact adjoint S^T y (unfiltered back-projection): ``(..., n_angles, n_det)`` -> ``(..., H, W)``."""
        check_last_dims(y, self.measurement_shape, "y")
        return self._apply(1, as_float(y, "y"), self.n_angles * self.n_detectors, (self.image_size,) * 2)

    def fbp(self, y):
        """Filtered back-projection: ramp-filter each projection, back-project, weight by the
        angular spacing. Exact (up to discretization) for many views over [0, pi). Dtypes as
        ``A(x)`` (integer data as float32, half precision computed in float32)."""
        check_last_dims(y, self.measurement_shape, "y")
        y = as_float(y, "y")
        check_finite(y, "y")
        q = y.to(_work_dtype(y.dtype))
        H, n_pad = ramp_filter(self.n_detectors, q.dtype)
        q = torch.fft.irfft(torch.fft.rfft(q, n=n_pad) * H.to(q.device), n=n_pad)[..., : self.n_detectors]
        return (self.adjoint(q) * self._d_theta).to(y.dtype)

    def __repr__(self):
        return f"ParallelBeamCT(image_size={self.image_size}, n_angles={self.n_angles}, n_detectors={self.n_detectors})"


def _check_real_tensor(y, name):
    if not torch.is_tensor(y) or not y.is_floating_point():
        kind = f"a {y.dtype} tensor" if torch.is_tensor(y) else type(y).__name__
        raise ValueError(f"{name} must be a real floating-point torch.Tensor (float32 or float64), got {kind}")
    check_finite(y, name)


def poisson_noise(y, I0=1e5, pixel_mm=5.0, generator=None):
    """Photon-counting (Poisson) noise on CT line integrals: the log-transformed noisy sinogram.

    ``y`` are the line integrals of ``ParallelBeamCT`` (square pixels of side 1, so ``y`` is in
    pixel lengths times voxel value); ``pixel_mm`` is the pixel side in mm (a 400 mm field of view
    on 64 x 64 pixels: 6.25 mm). The model, per ray (one detector bin of one view):

    * optical depth p = mu * y with mu = ``MU_UNIT_PER_MM`` * ``pixel_mm`` (attenuation of a
      voxel of value 1 along one pixel length);
    * Beer-Lambert: the expected count is lambda = I0 exp(-p), ``I0`` incident photons per ray
      per view; the detector counts N ~ Poisson(lambda), independently for every ray;
    * log transform: the result is -log(max(N, ``MIN_COUNTS``) / I0) / mu, in the units of ``y``
      (zero counts, likely only where lambda is a few photons, are raised to half a photon).

    Monochromatic beam, no electronic (readout) noise, no scatter, no beam hardening. By the
    delta method the result has mean ~ y + 1 / (2 lambda mu) and variance
    Var ~ 1 / (I0 exp(-p)) / mu^2: rays through more tissue (large p) reach the detector with
    fewer photons, so their log is noisier. ``I0`` counts photons per ray, i.e. per detector bin of
    one pixel's width: ``1e5`` on a 64 x 64 grid over 400 mm (6.25 mm bins and slices) is about
    2,600 photons per mm^2, a low dose per unit area though the usual per-ray figure.

    Randomness: the counts are drawn with ``torch.poisson`` on the generator's device (default:
    ``y``'s) and moved to ``y``'s, so a seeded CPU generator gives the same noise whatever device
    ``y`` is on; the result has ``y``'s dtype, shape and device.

    Explained in: chapter "Forward models" (book/01_forward_models.ipynb), section "What noise does".
    """
    _check_real_tensor(y, "y")
    check_number(I0, "I0 (incident photons per ray)", positive=True)
    check_number(pixel_mm, "pixel_mm (pixel side in mm)", positive=True)
    mu = MU_UNIT_PER_MM * pixel_mm
    lam = I0 * torch.exp(-mu * y)                                   # expected counts, Beer-Lambert
    N = torch.poisson(lam.to(generator_device(y, generator)), generator=generator).to(y.device)
    return -torch.log(N.clamp_min(MIN_COUNTS) / I0) / mu


def gaussian_noise(y, sigma, generator=None):
    """``y`` plus white Gaussian noise of standard deviation ``sigma`` (in the units of ``y``).

    The simplest noise model, e.g. for a sinogram whose photon counts are high everywhere (then
    ``poisson_noise`` is close to Gaussian with a ray-dependent variance). ``sigma = 0`` returns a
    copy of ``y`` and draws nothing. The noise is drawn on the generator's device (default:
    ``y``'s) and moved to ``y``'s, in ``y``'s dtype (``operators.randn_like``).
    """
    _check_real_tensor(y, "y")
    check_number(sigma, "sigma", positive=False)
    if sigma == 0:
        return y.clone()
    return y + sigma * randn_like(y, generator)
