"""Single-coil Cartesian MRI applied slice by slice, k-space sampling masks, and k-space noise
(``complex_gaussian_noise``).

Explained in: chapter "Forward models" (book/01_forward_models.ipynb) and chapter
"Compressed-sensing MRI" (book/07_mri.ipynb).
"""
import math
import numbers

import torch

from .operators import LinearOperator, check_finite, check_last_dims, check_positive_int, randn_like


def fft2c(x):
    """Centred orthonormal 2D FFT over the last two axes: F_c = fftshift . fft2(norm="ortho") . ifftshift."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def ifft2c(k):
    """Inverse of ``fft2c``; also its adjoint, since the orthonormal FFT is unitary."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


class CartesianMRI(LinearOperator):
    """Single-coil Cartesian MRI: ``M(x) = mask * F_c(x)`` on every axial slice.

    ``x`` is real, ``(..., H, W)``; ``M(x)`` is complex (complex64 for float32 input, complex128 for
    float64), with k = 0 at index (H // 2, W // 2). ``M.adjoint(k) = Re(F_c^H(mask * k))``: the
    real part is the adjoint of embedding a real image into complex space, so
    Re <M x, k> = <x, M.adjoint(k)> exactly. (The official code's MRI adjoint skips the mask and
    is off by a factor H * W; this one is exact.) The zero-filled reconstruction is
    ``M.adjoint(M(x))``.

    The mask lives on ``device`` (default: the mask's own); ``M.to(device)`` moves it, and an
    input on another device gets a copy made once and cached, so no call copies it.
    ``||M^T M|| = 1`` (a projection), unlike CT's hundreds.

    Explained in: chapter "Forward models" (book/01_forward_models.ipynb).
    """

    def __init__(self, mask, device=None):
        mask = torch.as_tensor(mask)
        if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
            raise ValueError(f"mask must be a square 2D (H, W) tensor, got shape {tuple(mask.shape)}")
        self.mask = mask.to(torch.bool)
        if not self.mask.any():
            raise ValueError("mask samples no k-space point (it is all False): an operator must measure something")
        self.image_size = mask.shape[-1]
        self.acceleration = mask.numel() / int(self.mask.sum())          # nominal: pixels / samples
        self.effective_acceleration = effective_acceleration(self.mask)  # of the real problem (Hermitian)
        self.to(device if device is not None else mask.device)

    def to(self, device):
        self.device = torch.device(device)
        self.mask = self.mask.to(self.device)
        self._masks = {self.mask.device: self.mask}
        return self

    def _mask_for(self, t):
        if t.device not in self._masks:
            self._masks[t.device] = self.mask.to(t.device)
        return self._masks[t.device]

    @property
    def measurement_shape(self):
        return tuple(self.mask.shape)

    def __call__(self, x):
        check_last_dims(x, self.mask.shape, "x")
        return fft2c(x) * self._mask_for(x)

    def adjoint(self, k):
        check_last_dims(k, self.mask.shape, "k")
        return ifft2c(k * self._mask_for(k)).real

    def __repr__(self):
        return f"CartesianMRI(image_size={self.image_size}, acceleration={self.acceleration:.2f})"


def conjugate_positions(mask):
    """The mask mirrored through the origin of k-space, k -> -k, on the centred grid of ``fft2c``:
    along an axis of even length n index c goes to (n - c) mod n (frequency c - n/2; the Nyquist
    index 0 maps to itself), of odd length to n - 1 - c."""
    flipped = torch.flip(mask, (-2, -1))
    return torch.roll(flipped, tuple(1 - n % 2 for n in mask.shape[-2:]), (-2, -1))


def effective_acceleration(mask):
    """Pixels over the real degrees of freedom that the mask measures, for real images.

    The image is real, so its spectrum is Hermitian, X(-k) = conj(X(k)): a sample at k also gives
    the one at -k. The real-constrained normal operator (``CartesianMRI``'s, whose adjoint takes
    the real part) has as its rank the number of points in the mask or its mirror image
    (``conjugate_positions``), so the problem is undersampled by H W over that number, not by the
    nominal H W over the number of samples (tested against the rank of the explicit normal matrix)."""
    mask = torch.as_tensor(mask).to(torch.bool)
    return mask.numel() / int((mask | conjugate_positions(mask)).sum())


def complex_gaussian_noise(y, snr_db, mask=None, generator=None):
    """Measured k-space ``y`` plus circular complex Gaussian noise at a signal-to-noise ratio of
    ``snr_db`` decibels, on the measured samples only.

    ``y`` is ``M(x)`` of a ``CartesianMRI`` ``M``, complex ``(..., H, W)``, zero outside the mask;
    ``mask`` is that operator's ``(H, W)`` sampling mask, ``M.mask`` (or ``M`` itself). Pass it:
    ``mask=None`` falls back to the support of ``y``, the (h, w) where any slice of ``y`` is
    nonzero (an all-zero slice still gets noise), which misses a measured sample that happens to
    be exactly 0 in every slice (rare for real images, but possible). The noise is
    n = sigma (a + i b) / sqrt(2) with a, b independent standard normal, so ``E|n|^2 = sigma^2`` and
    the real and imaginary parts each have variance sigma^2 / 2 (thermal
    noise of the receiver, white in k-space). It is added where the mask is True and nowhere
    else, so the result has the support of ``y`` and ``M.adjoint`` sees the same samples.

    SNR: the RMS of the measured k-space over the noise RMS,
    ``snr_db = 10 log10(mean |y|^2 / sigma^2)`` over the measured samples, the mean taken over all
    slices (one sigma for the whole scan, as for one receiver). With the orthonormal FFT and full
    sampling this is the image-domain RMS signal (over all pixels) over the RMS of the complex
    image noise F_c^H n, which is again white with ``E|.|^2 = sigma^2`` per pixel; the zero-filled
    image keeps its real part, half of that noise power (3 dB less). Undersampling masks keep the
    centre of k-space, where the energy is, so at the same ``snr_db`` they get larger noise per
    sample than full sampling. ``snr_db = inf`` returns a copy of ``y`` and draws nothing.

    Randomness: a and b are drawn on the generator's device (default: ``y``'s) and moved to
    ``y``'s, in the real dtype of ``y`` (float32 for complex64), so a seeded CPU generator gives
    the same noise on every device.

    Explained in: chapter "Forward models" (book/01_forward_models.ipynb), section "What noise does".
    """
    if not torch.is_tensor(y) or not y.is_complex():
        kind = f"a {y.dtype} tensor" if torch.is_tensor(y) else type(y).__name__
        raise ValueError(f"y must be complex k-space (complex64 or complex128, e.g. M(x)), got {kind}")
    if isinstance(snr_db, bool) or not isinstance(snr_db, numbers.Real) or math.isnan(snr_db) or snr_db == -math.inf:
        raise ValueError(f"snr_db must be a number of decibels (math.inf for no noise), got {snr_db!r}")
    if mask is None:                                         # the support of y, over all slices
        if y.dim() < 2:
            raise ValueError(f"y must have shape (..., H, W), got {tuple(y.shape)}")
        mask = (y != 0).reshape(-1, *y.shape[-2:]).any(0)
        if not mask.any():                                   # no signal: no noise at any SNR
            return y.clone()
    mask = getattr(mask, "mask", mask)                       # a CartesianMRI or its mask
    if not torch.is_tensor(mask) or mask.dim() != 2:
        raise ValueError(f"mask must be the operator's (H, W) sampling mask (M.mask) or the operator, got "
                         f"{tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__}")
    check_last_dims(y, mask.shape, "y")
    check_finite(y, "y")
    mask = mask.to(device=y.device, dtype=torch.bool)
    if not mask.any():
        raise ValueError("mask samples no k-space point")
    if (y * ~mask).abs().amax() > 0:
        raise ValueError("y has nonzero samples outside the mask: pass the mask of the operator that measured y")
    if snr_db == math.inf:
        return y.clone()
    signal_power = y.abs().double().pow(2)[mask.expand_as(y)].mean()
    sigma = float((signal_power / 10 ** (snr_db / 10)).sqrt())
    a, b = randn_like(y.real.new_empty(2, *y.shape), generator)     # real and imaginary parts
    return y + torch.complex(a, b) * (sigma / math.sqrt(2)) * mask


def _check_acceleration(acceleration):
    if isinstance(acceleration, bool) or not isinstance(acceleration, numbers.Real) or not 1 <= acceleration < math.inf:
        raise ValueError(f"acceleration must be a finite number >= 1 (1: full sampling), got {acceleration!r}")


def _line_mask(image_size, acceleration, center_fraction, seed, spacing):
    """Columns: the ``center_fraction`` central ones, then the rest of ``round(W / acceleration)``
    chosen among the others, equispaced with a random offset or uniformly at random."""
    n = check_positive_int(image_size, "image_size")
    _check_acceleration(acceleration)
    n_total, n_center = int(round(n / acceleration)), int(round(n * center_fraction))
    if n_center > n_total:
        raise ValueError(f"center_fraction={center_fraction} already samples more than 1/{acceleration} of the lines")
    start = (n - n_center + 1) // 2
    center = torch.arange(start, start + n_center)
    rest = torch.cat([torch.arange(0, start), torch.arange(start + n_center, n)])
    g = torch.Generator().manual_seed(seed)
    n_rest = n_total - n_center
    if spacing == "equispaced":
        step = len(rest) / max(n_rest, 1)
        idx = (torch.rand((), generator=g) * step + step * torch.arange(n_rest)).long()
    else:
        idx = torch.randperm(len(rest), generator=g)[:n_rest]
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[:, torch.cat([center, rest[idx]])] = True     # whole columns, the same in every row and slice
    return mask


def uniform1d_mask(image_size, acceleration=4.0, center_fraction=0.08, seed=0):
    """1D Cartesian mask: the ``center_fraction`` central columns plus equispaced columns
    (random offset from ``seed``), exactly ``round(W / acceleration)`` distinct columns in all.

    The same columns are sampled in every slice (as in the official code). Unlike the official
    ``uniform1d`` (which drew lines with replacement, so its "x2" sampled about W / 2.5 distinct
    lines), no line is drawn twice, so the acceleration is what it claims.
    """
    return _line_mask(image_size, acceleration, center_fraction, seed, "equispaced")


def random1d_mask(image_size, acceleration=4.0, center_fraction=0.08, seed=0):
    """1D Cartesian mask: the central columns plus columns drawn uniformly without replacement,
    exactly ``round(W / acceleration)`` distinct columns in all."""
    return _line_mask(image_size, acceleration, center_fraction, seed, "random")


def released1d_mask(image_size, acceleration=2, center_fraction=0.15, seed=0):
    """The official DiffusionMBIR code's 1D mask rule, reproduced to measure its quirk (chapters
    "Forward models" and "Compressed-sensing MRI"): ``W // acceleration`` columns are asked for,
    ``int(W * center_fraction)`` of them the central block, and the rest are drawn uniformly over
    all W columns *with replacement* (numpy's ``choice`` there, ``torch.randint`` here), so repeated
    draws and draws inside the centre leave fewer distinct columns than asked for. Experiments use
    ``uniform1d_mask``, which samples exactly the stated fraction."""
    n = check_positive_int(image_size, "image_size")
    _check_acceleration(acceleration)
    n_lines, n_center = int(n // acceleration), int(n * center_fraction)
    start = n // 2 - n_center // 2
    drawn = torch.randint(n, (max(n_lines - n_center, 0),), generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[:, start:start + n_center] = True
    mask[:, drawn] = True                              # a column drawn twice is still one column
    return mask


def variable_density2d_mask(image_size, acceleration=8.0, center_radius=0.05, power=2.0, seed=0):
    """2D variable-density mask: a fully sampled disc of radius ``center_radius`` (fraction of the
    width) plus points drawn without replacement with density proportional to (1 - r)^power,
    r the normalized distance from k = 0; exactly ``round(H W / acceleration)`` points."""
    n = check_positive_int(image_size, "image_size")
    _check_acceleration(acceleration)
    k = torch.arange(n) - n // 2
    r = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2).double() / (n / 2 * math.sqrt(2))
    center = r <= center_radius * math.sqrt(2)
    n_total = int(round(n * n / acceleration))
    n_rest = n_total - int(center.sum())
    if n_rest < 0:
        raise ValueError(f"center_radius={center_radius} already samples more than 1/{acceleration} of k-space")
    density = ((1 - r).clamp_min(0) ** power).flatten()
    density[center.flatten()] = 0
    g = torch.Generator().manual_seed(seed)
    picks = torch.multinomial(density, n_rest, replacement=False, generator=g)
    mask = center.flatten().clone()
    mask[picks] = True
    return mask.reshape(n, n)
