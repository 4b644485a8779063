"""Finite differences and the shape checks shared by every operator.

Explained in: chapter "Model-based iterative reconstruction" (book/02_mbir.ipynb).
"""
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


class FiniteDifference:
    """Forward difference along one axis: (D x)_i = x_{i+1} - x_i.

    The output has the input's shape. Boundary:

    * ``"neumann"`` (default): the last entry is 0, i.e. the volume is continued by copying its
      last slice. The first and last slices of a volume are unrelated, so they are not tied.
    * ``"periodic"``: the last entry is x_0 - x_{n-1} (the official DiffusionMBIR code's choice,
      which ties the last slice to the first; kept for parity).

    The adjoint is exact for both: (D^T y)_i = y_{i-1} - y_i with y_{-1} = y_{n-1} (periodic) or
    with the boundary entry y_{n-1} treated as 0 (neumann).

    ``axis`` counts from the end for negative values, so ``FiniteDifference(-3)`` is D_z for
    volumes shaped ``(..., D, H, W)``.

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
