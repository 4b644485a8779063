"""CG, soft-thresholding, ADMM-TV limiting cases, and clear errors for bad input."""
import pytest
import torch

import dmbir_edu as dm
from dmbir_edu.reconstruct import least_squares


def test_cg_solves_random_spd_system():
    g = torch.Generator().manual_seed(0)
    B = torch.randn(40, 40, dtype=torch.float64, generator=g)
    M = B @ B.T + 0.5 * torch.eye(40, dtype=torch.float64)
    x_true = torch.randn(40, dtype=torch.float64, generator=g)
    x = dm.conjugate_gradient(lambda v: M @ v, M @ x_true, torch.zeros(40, dtype=torch.float64), n_iter=200, tol=1e-12)
    assert float((x - x_true).norm() / x_true.norm()) < 1e-8


def test_cg_past_convergence_stays_put_in_float32():
    # MRI's normal operator Re(F^H M F) has eigenvalues {0, 1/2, 1}: per-slice CG converges exactly in
    # a few iterations, after which an unguarded CG divides float32 round-off by round-off and explodes
    A = dm.CartesianMRI(dm.uniform1d_mask(32, 4.0, center_fraction=0.08, seed=0))
    x_true = dm.data.phantom(dm.data.TEST_SEEDS[0], 32, 4)
    ATy = A.adjoint(A(x_true))
    x0 = torch.randn(x_true.shape, generator=torch.Generator().manual_seed(0))
    normal = lambda v: A.adjoint(A(v))                                    # noqa: E731
    x3, x20 = (dm.conjugate_gradient(normal, ATy, x0, n_iter=n, dims=(-2, -1)) for n in (3, 20))
    assert float((normal(x20) - ATy).norm() / ATy.norm()) < 1e-4
    assert float((x20 - x3).norm() / x3.norm()) < 1e-4


def test_soft_threshold_is_the_l1_prox():
    v = torch.tensor([-3.0, -0.5, 0.0, 0.2, 2.0])
    assert dm.soft_threshold(v, 1.0).tolist() == [-2.0, 0.0, 0.0, 0.0, 1.0]
    # prox property: minimizes 1/2 (x - v)^2 + tau |x| on a grid
    grid = torch.linspace(-4, 4, 80001)
    for vi in v:
        obj = 0.5 * (grid - vi) ** 2 + 1.0 * grid.abs()
        assert abs(float(grid[obj.argmin()]) - float(dm.soft_threshold(vi, 1.0))) < 1e-3


def small_problem(n_views=6, size=16, depth=6):
    A = dm.ParallelBeamCT(size, dm.sparse_view_angles(n_views))
    x = dm.data.phantom(dm.data.TEST_SEEDS[0], size, depth).double()
    return A, x, A(x)


def test_admm_with_lam_zero_is_least_squares():
    A, x, y = small_problem()
    x_ls = least_squares(y, A, n_iter=400)
    x_admm = dm.admm_tv(y, A, lam=0.0, rho=1.0, axes="z", n_iter=40, n_cg=20)
    res = lambda v: float((A(v) - y).norm() / y.norm())
    # both reach the least-squares residual (the null space of A makes x itself non-unique)
    assert res(x_admm) < 1e-3 and res(x_ls) < 1e-3


def test_admm_objective_decreases():
    A, x, y = small_problem()
    D = dm.tv_operators("xyz")
    objs = [dm.tv_objective(torch.zeros_like(x), y, A, D, 0.05)]      # the start, x = 0
    dm.admm_tv(y, A, lam=0.05, rho=0.5, axes="xyz", n_iter=60, n_cg=10,
               callback=lambda k, x_k, s: objs.append(dm.tv_objective(x_k, y, A, D, 0.05)))
    assert objs[-1] < 0.5 * objs[0]
    tail = objs[10:]
    assert all(b <= a * (1 + 1e-3) for a, b in zip(tail, tail[1:])), tail


def test_admm_tv_z_leaves_z_constant_solution_unchanged():
    """If the truth is constant along z and A is injective per slice, TV-z costs nothing at the truth.

    A^T A of 20 views of an 8 x 8 slice is injective but ill-conditioned (condition number about
    2e6), so each x-update takes 60 CG iterations to be accurate: the test is about ADMM's fixed
    point, not about an inexact inner solve (with 30, the error depends on the slice's content)."""
    size = 8
    A = dm.ParallelBeamCT(size, dm.sparse_view_angles(20))
    x = dm.data.phantom(3, size, 1).double().expand(5, size, size).contiguous()
    x_hat = dm.admm_tv(A(x), A, lam=1.0, rho=100.0, axes="z", n_iter=50, n_cg=60)
    assert float((x_hat - x).norm() / x.norm()) < 1e-3


def test_admm_state_is_explicit_and_carried():
    A, x, y = small_problem()
    D = dm.tv_operators("z")
    state = dm.ADMMState.zeros(torch.zeros_like(x), len(D))
    x1, s1 = dm.admm_tv_step(torch.zeros_like(x), state, y, A, D, lam=0.05, rho=0.5, n_cg=5)
    assert all(t.abs().sum() == 0 for t in state.v + state.u)     # frozen: the input state is untouched
    x2a, _ = dm.admm_tv_step(x1, s1, y, A, D, lam=0.05, rho=0.5, n_cg=5)
    x2b, _ = dm.admm_tv_step(x1, state, y, A, D, lam=0.05, rho=0.5, n_cg=5)
    assert not torch.allclose(x2a, x2b)                              # the carried (z, u) matters


@pytest.mark.parametrize("method", ["fbp", "adjoint", "cg", "admm_tv", "admm_tv_z"])
def test_reconstruct_classical_methods_beat_nothing(method):
    A, x, y = small_problem(n_views=30)
    x_hat = dm.reconstruct(y.float(), A, method, **({"n_iter": 10} if "admm" in method else {}))
    assert x_hat.shape == x.shape
    if method != "adjoint":
        assert dm.metrics.psnr(x_hat, x) > dm.metrics.psnr(torch.zeros_like(x), x) + 3


def test_bad_input_gets_clear_errors():
    A, x, y = small_problem()
    with pytest.raises(ValueError, match="x must have shape"):
        A(torch.zeros(3, 15, 16))
    with pytest.raises(ValueError, match="y must have shape"):
        dm.reconstruct(torch.zeros(6, 5, 7), A, "fbp")
    bad = y.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        dm.reconstruct(bad, A, "admm_tv")
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        dm.admm_tv(y, A, lam=-1.0)
    with pytest.raises(ValueError, match="rho must be a finite number > 0"):
        dm.admm_tv(y, A, rho=-1.0)
    with pytest.raises(ValueError, match="unknown method"):
        dm.reconstruct(y, A, "magic")
    with pytest.raises(ValueError, match="mask must be a square"):
        dm.CartesianMRI(torch.ones(16, 8))
    M = dm.CartesianMRI(dm.uniform1d_mask(16, 4, 0.1))
    with pytest.raises(ValueError, match="x must have shape"):
        M(torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match="needs a prior"):
        dm.reconstruct(y, A, "diffusionmbir")
    with pytest.raises(ValueError, match="unknown prior"):
        dm.load_prior("no_such_prior")


def test_cg_per_slice_stays_finite_when_the_warm_start_dwarfs_the_data():
    """A slice-wise sampler warm-starts CG at a noisy sample (sigma up to 40) over slices whose data
    are nearly zero (the top of a real head). MRI's normal operator is a projection: CG converges
    in 3 iterations, and 47 more must not divide round-off by round-off (this produced NaN slices)."""
    from dmbir_edu import CartesianMRI, uniform1d_mask
    from dmbir_edu.mbir import conjugate_gradient

    A = CartesianMRI(uniform1d_mask(32, 4.0, seed=0))
    g = torch.Generator().manual_seed(0)
    x_true = torch.rand(4, 32, 32, generator=g) * torch.tensor([1.0, 1e-3, 1e-6, 0.0]).reshape(4, 1, 1)
    rhs = A.adjoint(A(x_true))
    x0 = 40 * torch.randn(4, 32, 32, generator=g)
    x = conjugate_gradient(lambda v: A.adjoint(A(v)), rhs, x0, n_iter=50, dims=(-2, -1))
    assert torch.isfinite(x).all()
    assert torch.allclose(A.adjoint(A(x)), rhs, atol=1e-3)
