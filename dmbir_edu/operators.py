"""The operator protocol, finite differences, and the argument checks shared by the whole package
(shapes, numbers, counts, generators) and by its command-line tools (``argparse`` types).

Explained in: chapter "Model-based iterative reconstruction" (book/02_mbir.ipynb).
"""
import argparse
import math
import numbers
from dataclasses import dataclass

import torch


def check_last_dims(t, shape, name):
    """Raise a ValueError naming ``name`` unless ``t``'s trailing dims equal ``shape``."""
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape[-len(shape):]) != tuple(shape) or t.dim() < len(shape):
        raise ValueError(f"{name} must have shape (..., {', '.join(map(str, shape))}), got {tuple(t.shape)}")


def check_finite(t, name):
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values")


def check_number(value, name, positive):
    """Raise a ValueError naming ``name`` unless ``value`` is a finite real number, > 0 if ``positive``
    else >= 0 (a weight, a noise level, a dose)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or (
            value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")


def check_positive_int(value, name):
    """``value`` as an int; a ValueError naming ``name`` unless it is a whole number >= 1 (a size, a
    count of views, iterations or steps; 16.0 and True are not). The entry points (``reconstruct``,
    ``admm_tv``, the samplers) refuse 0 iterations, which would return their starting point; the
    building blocks they call once per iteration (``conjugate_gradient``, ``admm_tv_step``) check
    nothing, and ``conjugate_gradient(..., n_iter=0)`` is its starting point."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def as_float(t, name):
    """``t`` with integer (or bool) data converted to torch's default float dtype (float32 unless
    changed); floating-point and complex tensors are returned as they are."""
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t if t.is_floating_point() or t.is_complex() else t.to(torch.get_default_dtype())


def check_measurements(y, A, name="y"):
    """``y`` checked as measurements of ``A`` (shape ``(..., *A.measurement_shape)``, at least one
    slice, finite values) and returned as floats (``as_float``)."""
    check_last_dims(y, A.measurement_shape, name)
    if y.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(y.shape)}): it must hold at least one slice of measurements")
    y = as_float(y, name)
    check_finite(y, name)
    return y


def generator_device(x, generator=None):
    """The device random numbers for ``x`` are drawn on: the generator's, else ``x``'s.

    Noise is drawn there and then moved to ``x``'s device (as ``randn_like`` does), so a
    seeded CPU generator gives the same numbers whatever device ``x`` lives on. Every function that
    draws noise asks this first, so a ``generator`` that is not a ``torch.Generator`` (a bare seed
    such as 42) is a TypeError here: pass ``torch.Generator().manual_seed(42)``."""
    if generator is None:
        return x.device
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (for a seed s, pass "
                        f"torch.Generator().manual_seed(s)), got {type(generator).__name__} {generator!r}")
    return generator.device


def randn_like(x, generator=None):
    """Standard normal noise shaped like ``x``, in its dtype and on its device.

    The noise is drawn on the generator's device (``generator_device``) and moved to ``x``'s, so a
    seeded CPU generator gives the same numbers whatever device the volume is on (same seed, same
    result on CPU and GPU, up to the device's arithmetic). The samplers, ``ct.poisson_noise`` and
    ``mri.complex_gaussian_noise`` all draw their noise here."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator_device(x, generator)).to(x.device)


def positive_int_arg(text):
    """``argparse`` type of a size or a count: a whole number >= 1 (else argparse exits with status 2
    and a one-line message naming the option)."""
    try:
        return check_positive_int(int(text), "value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None


def device_arg(text):
    """``argparse`` type of ``--device``: a torch device this machine has (cpu, cuda, cuda:1, mps),
    checked by making an empty tensor there; returned as the string given."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use e.g. cpu, cuda, cuda:1 or mps") from None
    try:
        torch.empty(0, device=device)
    except Exception as e:                 # AssertionError (no CUDA build), RuntimeError, NotImplementedError
        reason = str(e).splitlines()[0].split(". ")[0] if str(e) else type(e).__name__
        raise argparse.ArgumentTypeError(f"device {text!r} is not available on this machine ({reason})") from None
    return text


class LinearOperator:
    """What ``reconstruct`` and the samplers rely on; subclass it to plug in an operator of your own.

    A subclass sets ``image_size`` (slices are ``image_size`` x ``image_size``) and
    ``measurement_shape`` (one slice's measurements) and implements

    * ``A(x)``: ``(..., H, W)`` -> ``(..., *measurement_shape)``, slice by slice;
    * ``A.adjoint(y)``: the exact adjoint, back to ``(..., H, W)`` (real images);
    * ``A.to(device)``: the same operator with its tensors on ``device`` (returns ``self``).

    It inherits ``A.normal_norm()``, ||A^T A|| (the largest eigenvalue of the normal operator) by
    power iteration, cached: the scale of the methods' default lam and rho (``scaled_defaults``).
    Scaling A by c scales the data term 1/2 ||A x - y||^2 by c^2 and ||A^T A|| with it, so one
    relative default serves every view count, arc and modality. The ADMM penalty rho sets the
    conditioning of the x-update (A^T A + rho D_z^T D_z), which ||A^T A|| measures; the values for
    the book's operators and the validation runs behind this choice are in the book's appendix
    "Validation". It also inherits ``A.dot_test()``, the adjoint check every operator must pass.
    Optional: ``A.fbp(y)`` (the method "fbp" uses it where it exists) and ``A.final_correction``
    (True where the released DiffusionMBIR ends with a Kaczmarz step, i.e. CT; False here).
    """

    final_correction = False
    _normal_norm = None

    def __call__(self, x):
        raise NotImplementedError

    def adjoint(self, y):
        raise NotImplementedError

    def to(self, device):
        return self

    def dot_test(self, shape=None, seed=0):
        """The adjoint test: abs(<A x, y> - <x, A^T y>) / max(abs(<A x, y>), abs(<x, A^T y>)) for
        random x, y in float64 (complex y where A's output is complex; the real part of the inner
        product, since images are real). An exact adjoint gives round-off (below 1e-12 for the
        package's operators); c A^T gives abs(1 - c) / max(1, abs(c)). ``shape``: of x, default two
        slices (2, image_size, image_size)."""
        g = torch.Generator().manual_seed(seed)
        shape = (2, self.image_size, self.image_size) if shape is None else tuple(shape)
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        device = getattr(self, "device", None)
        x = x.to(device) if device is not None else x
        Ax = self(x)
        y = randn_like(Ax, g)
        lhs = (Ax.conj() * y).real.sum() if Ax.is_complex() else (Ax * y).sum()
        rhs = (x * self.adjoint(y)).sum()
        return float((lhs - rhs).abs() / torch.maximum(lhs.abs(), rhs.abs()))

    def normal_norm(self, n_iter=100, seed=0):
        """||A^T A|| (spectral norm) by ``n_iter`` power iterations on one slice, float64, cached.

        Slices are independent, so one slice's normal operator is the whole story. Relative
        accuracy: better than 1e-3 for the book's operators (tested against the exact value for
        MRI, 1, and a dense eigen-solve for small CT).
        """
        if getattr(self, "_normal_norm", None) is None:
            g = torch.Generator().manual_seed(seed)
            v = torch.randn(1, self.image_size, self.image_size, generator=g, dtype=torch.float64)
            v = v.to(self.device) if getattr(self, "device", None) is not None else v
            lam = 0.0
            for _ in range(n_iter):
                w = self.adjoint(self(v / v.norm()))
                lam, v = w.norm().item(), w
            self._normal_norm = lam
        return self._normal_norm


class FiniteDifference(LinearOperator):
    """Forward difference along one axis: (D x)_i = x_{i+1} - x_i.

    The output has the input's shape. Boundary:

    * ``"neumann"`` (default): the last entry is 0, i.e. the volume is continued by copying its
      last slice. The first and last slices of a volume are unrelated, so they are not tied.
    * ``"periodic"``: the last entry is x_0 - x_{n-1} (the official DiffusionMBIR code's choice,
      which ties the last slice to the first; kept for parity).

    The adjoint is exact for both: (D^T y)_i = y_{i-1} - y_i with y_{-1} = y_{n-1} (periodic) or
    with the boundary entry y_{n-1} treated as 0 (neumann).

    ``axis`` counts from the end for negative values, so ``FiniteDifference(-3)`` is D_z for
    volumes shaped ``(..., D, H, W)``. A ``LinearOperator`` on volumes of any shape:
    ``dot_test(shape)`` takes the shape of one.

    Explained in: chapter "Model-based iterative reconstruction" (book/02_mbir.ipynb).
    """

    def __init__(self, axis=-3, boundary="neumann"):
        if boundary not in ("neumann", "periodic"):
            raise ValueError(f"boundary must be 'neumann' or 'periodic', got {boundary!r}")
        self.axis, self.boundary = axis, boundary

    def _zero_last(self, t):
        if self.boundary == "periodic":
            return t
        t = t.clone()
        t.select(self.axis, t.shape[self.axis] - 1).zero_()
        return t

    def __call__(self, x):
        return self._zero_last(torch.roll(x, -1, self.axis) - x)

    def adjoint(self, y):
        y = self._zero_last(y)
        return torch.roll(y, 1, self.axis) - y

    def __repr__(self):
        return f"FiniteDifference(axis={self.axis}, boundary={self.boundary!r})"

class WrappedOperator(LinearOperator):
    """An operator built on another, ``self.A``: it forwards what ``A`` is (image size,
    measurement shape, device, final correction, scale) and applies ``A`` and its adjoint. Subclass
    it and override ``__call__`` or ``adjoint`` (a counter, a scaled back-projector)."""

    def __init__(self, A):
        self.A = A
        self.image_size, self.measurement_shape = A.image_size, A.measurement_shape
        self.final_correction = A.final_correction
        self.device = getattr(A, "device", None)

    def __call__(self, x):
        return self.A(x)

    def adjoint(self, y):
        return self.A.adjoint(y)


@dataclass(frozen=True)
class Preset:
    """A method's defaults in one record, kept next to its function (``mbir.ADMM_TV``,
    ``sampling.DMBIR``, ...): the function's signature reads it, and so do ``reconstruct.PRESETS``,
    the experiments, the benchmark and the book. Fields a method does not have stay None.

    ``lam_rel``, ``rho_rel``: the TV weight and the ADMM penalty relative to the operator's scale
    ||A^T A|| (``scaled_defaults``). The reasons for each value, with the validation runs behind
    them, are in the book's appendix "Validation"."""
    n_steps: int = None      # diffusion steps N
    n_iter: int = None       # ADMM iterations (admm_tv)
    n_cg: int = None         # CG iterations per x-update / data-consistency step
    lam_rel: float = None
    rho_rel: float = None
    snr: float = None        # Langevin corrector signal-to-noise ratio r
    chunk: int = None        # slices per predictor-corrector call (a method parameter: see sampling.pc_step)
    eta: float = None        # DDS re-noise: 0 deterministic, 1 fresh noise only
    zeta: float = None       # DPS guidance step


def scaled_defaults(A, lam, rho, preset):
    """A method's (lam, rho): the caller's where given, else the ``preset``'s ``lam_rel`` and
    ``rho_rel`` times ||A^T A|| (``LinearOperator.normal_norm``)."""
    if lam is not None and rho is not None:
        return lam, rho
    scale = A.normal_norm()
    return (preset.lam_rel * scale if lam is None else lam), (preset.rho_rel * scale if rho is None else rho)
