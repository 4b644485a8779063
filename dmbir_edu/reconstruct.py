"""One entry point for every method in the book: ``reconstruct(y, A, method, ...)``.

It only dispatches; each method's own function holds the algorithm, and its defaults are one
``operators.Preset`` record next to it, collected in ``PRESETS``.
"""
import torch

from .mbir import ADMM_TV, admm_tv, conjugate_gradient
from .operators import check_measurements, check_positive_int
from .sampling import PRESETS as SAMPLER_PRESETS
from .sampling import SAMPLERS

DIFFUSION_METHODS = tuple(SAMPLERS)                          # the methods that need a prior
METHODS = ("fbp", "adjoint", "cg", "admm_tv", "admm_tv_z") + DIFFUSION_METHODS
PRESETS = {"admm_tv": ADMM_TV, "admm_tv_z": ADMM_TV, **SAMPLER_PRESETS}    # method -> its defaults


def least_squares(y, A, n_iter=20):
    """min_x 1/2 ||A x - y||^2 by ``n_iter`` (>= 1) CG iterations on the normal equations
    A^T A x = A^T y, from zeros."""
    n_iter = check_positive_int(n_iter, "n_iter")
    ATy = A.adjoint(y)
    return conjugate_gradient(lambda v: A.adjoint(A(v)), ATy, torch.zeros_like(ATy), n_iter)


def reconstruct(y, A, method, prior=None, generator=None, progress=True, **kwargs):
    """Reconstruct a (D, H, W) volume from measurements ``y = A(x)``.

    method: "fbp" (CT only), "adjoint" (zero-filled for MRI), "cg" (least squares),
    "admm_tv" (3D anisotropic TV), "admm_tv_z" (TV along z only), "slicewise" (2D diffusion
    per slice), "diffusionmbir", "dds". ``kwargs`` go to the method's own function; every
    method's defaults work on every task of the book (lam and rho scale with the operator).
    ``A`` is any operator following ``operators.LinearOperator``. Device and dtype follow ``y``;
    integer ``y`` (counts) is converted to torch's default float dtype first. "admm_tv" and
    "admm_tv_z" set ``axes`` ("xyz", "z"); an ``axes`` keyword overrides it (e.g. "yx": 2D TV).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    y = check_measurements(y, A)
    if method == "fbp":
        if not hasattr(A, "fbp"):
            raise ValueError(f"method 'fbp' needs an operator with an fbp method (CT), not {type(A).__name__}; "
                             "use 'adjoint' (zero-filled) for MRI")
        return A.fbp(y)
    if method == "adjoint":
        return A.adjoint(y)
    if method == "cg":
        return least_squares(y, A, **kwargs)
    if method in ("admm_tv", "admm_tv_z"):
        return admm_tv(y, A, **{"axes": "xyz" if method == "admm_tv" else "z", **kwargs})
    if prior is None:
        raise ValueError(f"method {method!r} needs a prior, e.g. prior=dmbir_edu.load_prior('phantom64')")
    return SAMPLERS[method](y, A, prior, generator=generator, progress=progress, **kwargs)
