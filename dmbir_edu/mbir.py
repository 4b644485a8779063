"""Classical model-based iterative reconstruction: CG, soft-thresholding, ADMM-TV.

Problem (anisotropic TV along the chosen axes; D_z only for DiffusionMBIR):

    min_x  1/2 ||A x - y||^2 + lam * sum_i ||D_i x||_1.

ADMM with the splitting v_i = D_i x and scaled duals u_i (Boyd et al. 2011, section 3.1.1, who
call the split variable z; here z is the axis)::

    x   <- argmin_x 1/2 ||A x - y||^2 + rho/2 sum_i ||D_i x - v_i + u_i||^2
           i.e. (A^T A + rho sum_i D_i^T D_i) x = A^T y + rho sum_i D_i^T (v_i - u_i), by CG
    v_i <- soft(D_i x + u_i, lam / rho)
    u_i <- u_i + D_i x - v_i

In code the tuple of difference operators (D_z,) or (D_z, D_y, D_x) is ``diffs``, one of them ``Di``.

Explained in: chapter "Model-based iterative reconstruction" (book/02_mbir.ipynb).
"""
from dataclasses import dataclass

import torch

from .operators import FiniteDifference, Preset, check_measurements, check_number, check_positive_int, scaled_defaults


def conjugate_gradient(normal_op, rhs, x0, n_iter=20, tol=None, dims=None):
    """Solve ``normal_op(x) = rhs`` for a symmetric positive (semi)definite operator by CG.

    Starts at ``x0`` (a warm start). Inner products are global over the whole tensor
    (``dims=None``, as the paper), or taken over ``dims`` only, e.g. ``dims=(-2, -1)`` runs an
    independent CG per slice when the operator acts slice by slice.
    Runs exactly ``n_iter`` iterations; a system (or, with ``dims``, a slice) whose residual has
    dropped to ``||r|| <= tol max(||rhs||, ||r_0||)`` stops moving (default tol: 100 x the dtype's
    machine epsilon): past that point round-off would be divided by round-off (MRI's normal
    operator has 3 distinct eigenvalues, so CG converges exactly in 3 iterations). The scale is
    the larger of ``rhs`` and the first residual ``r_0 = rhs - N x0``: a warm start far larger
    than the data (a noisy sample over a nearly empty slice) leaves round-off of its own size. There is no early exit,
    so the loop never waits for the host: on a GPU every iteration is queued without a sync.
    With ``n_iter=1`` this is one steepest-descent step with exact line search (the released
    DiffusionMBIR setting). Device and dtype follow ``rhs``.
    """
    def dot(a, b):
        return (a * b).sum() if dims is None else (a * b).sum(dims, keepdim=True)

    x = x0.clone()
    r = rhs - normal_op(x)
    p = r.clone()
    rr = dot(r, r)
    tol = 100 * torch.finfo(rhs.dtype).eps if tol is None else tol
    converged = tol**2 * torch.maximum(dot(rhs, rhs), rr)
    for _ in range(n_iter):
        active = rr > converged
        Ap = normal_op(p)
        alpha = torch.where(active, rr / dot(p, Ap).clamp_min(1e-30), 0.0)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = dot(r, r)
        p = r + torch.where(active, rr_new / rr.clamp_min(1e-30), 0.0) * p
        rr = rr_new
    return x


def soft_threshold(v, tau):
    """Proximal map of ``tau ||.||_1``: ``sign(v) max(|v| - tau, 0)``, elementwise."""
    return torch.sign(v) * torch.clamp(v.abs() - tau, min=0)


@dataclass(frozen=True)
class ADMMState:
    """The ADMM split variables v_i = D_i x and scaled duals u_i, one tensor per difference.

    Created once (``ADMMState.zeros``) and threaded through the iterations; DiffusionMBIR carries
    it across all diffusion steps (the official code hides it in closures).
    """
    v: tuple
    u: tuple

    @staticmethod
    def zeros(x, n_diffs):
        return ADMMState(tuple(torch.zeros_like(x) for _ in range(n_diffs)),
                         tuple(torch.zeros_like(x) for _ in range(n_diffs)))


def tv_operators(axes="z", boundary="neumann"):
    """Difference operators for volumes ``(..., D, H, W)``: ``"z"`` -> (D_z,), ``"xyz"`` -> (D_z, D_y, D_x)."""
    names = {"z": -3, "y": -2, "x": -1}
    if not isinstance(axes, str) or not axes or any(a not in names for a in axes):
        raise ValueError(f"axes must be a string of 'z', 'y', 'x' (e.g. 'z' or 'xyz'), got {axes!r}")
    return tuple(FiniteDifference(names[a], boundary) for a in axes)


def check_lam_rho(lam, rho):
    """A TV weight lam >= 0 and an ADMM penalty rho > 0, both finite (NaN fails both)."""
    check_number(lam, "lam", positive=False)
    check_number(rho, "rho", positive=True)


def admm_tv_step(x, state, y, A, diffs, lam, rho, n_cg=1, ATy=None):
    """One ADMM-TV iteration (module docstring), warm-started at ``x``.

    Parameters
    ----------
    x : (D, H, W) tensor, the current estimate (the CG warm start).
    state : ADMMState with one (v_i, u_i) per operator in ``diffs``.
    y, A : measurements and forward operator (``A(x)``, ``A.adjoint(y)``).
    diffs : tuple of FiniteDifference D_i, e.g. ``tv_operators("z")``.
    lam, rho : TV weight and ADMM penalty.
    n_cg : CG iterations for the x-update.
    ATy : optional precomputed ``A.adjoint(y)``.

    Returns
    -------
    (x, ADMMState)
    """
    ATy = A.adjoint(y) if ATy is None else ATy
    # x-update: (A^T A + rho sum D_i^T D_i) x = A^T y + rho sum D_i^T (v_i - u_i)
    rhs = ATy + rho * sum(Di.adjoint(v - u) for Di, v, u in zip(diffs, state.v, state.u))

    def normal_op(w):
        return A.adjoint(A(w)) + rho * sum(Di.adjoint(Di(w)) for Di in diffs)

    x = conjugate_gradient(normal_op, rhs, x, n_cg)
    Dx = tuple(Di(x) for Di in diffs)
    # v-update: soft-threshold; u-update: dual ascent on the constraint D_i x = v_i
    v = tuple(soft_threshold(d + u, lam / rho) for d, u in zip(Dx, state.u))
    u = tuple(u + d - vi for u, d, vi in zip(state.u, Dx, v))
    return x, ADMMState(v, u)


def data_consistency(x, ATy, A, n_cg):
    """``n_cg`` CG iterations on A^T A x = A^T y, one independent solve per slice, warm-started at
    ``x``: the data-consistency step of the slice-wise samplers (no coupling between slices)."""
    return conjugate_gradient(lambda w: A.adjoint(A(w)), ATy, x, n_cg, dims=(-2, -1))


def tv_objective(x, y, A, diffs, lam):
    """1/2 ||A x - y||^2 + lam sum_i ||D_i x||_1 (real for complex y)."""
    r = A(x) - y
    return 0.5 * (r.abs() ** 2).sum().item() + lam * sum(Di(x).abs().sum().item() for Di in diffs)


# admm_tv's defaults (``operators.Preset``; the reasons: book appendix "Validation").
ADMM_TV = Preset(n_iter=30, n_cg=20, lam_rel=1e-4, rho_rel=1e-3)


def admm_tv(y, A, lam=None, rho=None, axes="xyz", n_iter=ADMM_TV.n_iter, n_cg=ADMM_TV.n_cg, x0=None, boundary="neumann",
            callback=None):
    """ADMM-TV reconstruction: ``n_iter`` ADMM iterations of ``admm_tv_step`` from ``x0``
    (default zeros, as the official baseline), with ``n_cg`` CG iterations per x-update.

    lam, rho default (None) to ``ADMM_TV.lam_rel`` and ``ADMM_TV.rho_rel`` times ||A^T A||
    (``A.normal_norm()``), so that one default serves every task.

    ``axes="xyz"`` is 3D anisotropic TV, ``axes="z"`` TV along z only. ``callback(k, x, state)``
    is called after every iteration. Returns x, shaped like ``A.adjoint(y)``. ``n_iter`` and
    ``n_cg`` are whole numbers >= 1; integer ``y`` is converted to float (``operators.as_float``).

    Explained in: chapter "Model-based iterative reconstruction" (book/02_mbir.ipynb).
    """
    y = check_measurements(y, A)
    diffs = tv_operators(axes, boundary)
    n_iter, n_cg = check_positive_int(n_iter, "n_iter"), check_positive_int(n_cg, "n_cg")
    lam, rho = scaled_defaults(A, lam, rho, ADMM_TV)
    check_lam_rho(lam, rho)
    ATy = A.adjoint(y)
    x = torch.zeros_like(ATy) if x0 is None else x0
    state = ADMMState.zeros(x, len(diffs))
    for k in range(n_iter):
        x, state = admm_tv_step(x, state, y, A, diffs, lam, rho, n_cg, ATy)
        if callback is not None:
            callback(k, x, state)
    return x
