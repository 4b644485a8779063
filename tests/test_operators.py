"""Adjoint dot tests (float64) and conventions of every operator."""
import math

import pytest
import torch

import dmbir_edu as dm

TOL = 1e-6


def dot_test(A, x_shape, y_example, g):
    """|<A x, y> - <x, A^T y>| / |<A x, y>| for random x, y (real part for complex y)."""
    x = torch.randn(x_shape, dtype=torch.float64, generator=g)
    y = torch.randn(y_example.shape, dtype=torch.float64, generator=g)
    if y_example.is_complex():
        y = torch.complex(y, torch.randn(y_example.shape, dtype=torch.float64, generator=g))
    lhs = (A(x) * y.conj()).sum().real
    rhs = (x * A.adjoint(y)).sum()
    return float((lhs - rhs).abs() / lhs.abs())


def operators():
    yield "ct_sparse8", dm.ParallelBeamCT(32, dm.sparse_view_angles(8))
    yield "ct_limited90", dm.ParallelBeamCT(32, dm.limited_angle_angles(90, 30))
    yield "mri_uniform1d", dm.CartesianMRI(dm.uniform1d_mask(32, 4, 0.08, seed=1))
    yield "mri_vd2d", dm.CartesianMRI(dm.variable_density2d_mask(32, 8, seed=1))
    for b in ("neumann", "periodic"):
        for ax in (-3, -2, -1):
            yield f"D{ax}_{b}", dm.FiniteDifference(ax, b)


@pytest.mark.parametrize("name,A", list(operators()))
def test_adjoint(name, A):
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(5, 32, 32, dtype=torch.float64)
    err = dot_test(A, x0.shape, A(x0), g)
    print(f"{name}: relative adjoint error {err:.2e}")
    assert err < TOL


def test_operators_follow_input_dtype_and_batch():
    A = dm.ParallelBeamCT(16, dm.sparse_view_angles(4))
    x = torch.rand(2, 3, 16, 16)
    assert A(x).shape == (2, 3, 4, A.n_detectors) and A(x).dtype == torch.float32
    assert torch.allclose(A(x)[1, 2], A(x[1, 2]), atol=1e-5)
    M = dm.CartesianMRI(dm.uniform1d_mask(16, 4, 0.1))
    assert M(x).dtype == torch.complex64 and M(x.double()).dtype == torch.complex128
    assert M.adjoint(M(x)).dtype == torch.float32


def test_ct_geometry_and_fbp():
    A = dm.ParallelBeamCT(64, dm.sparse_view_angles(8))
    assert A.n_detectors == math.ceil(math.sqrt(2) * 64) == 91
    assert dm.ParallelBeamCT(256, [0.0]).n_detectors == 363          # the official code's detector count
    # FBP is exact up to discretization for a smooth image and many views
    A = dm.ParallelBeamCT(64, dm.sparse_view_angles(180))
    yy, xx = torch.meshgrid(torch.arange(64.0) - 31.5, torch.arange(64.0) - 31.5, indexing="ij")
    blob = torch.exp(-(xx**2 + (yy - 5) ** 2) / (2 * 8**2)).double()
    err = float((A.fbp(A(blob)) - blob).norm() / blob.norm())
    print(f"FBP relative error on a smooth blob, 180 views: {err:.4f}")
    assert err < 0.02


def test_mri_is_unitary_when_fully_sampled():
    M = dm.CartesianMRI(torch.ones(16, 16, dtype=torch.bool))
    x = torch.rand(3, 16, 16, dtype=torch.float64)
    assert torch.allclose(M.adjoint(M(x)), x, atol=1e-12)
    assert torch.allclose((M(x).abs() ** 2).sum(), (x**2).sum())
    assert M(x)[..., 8, 8].real.allclose(x.sum((-2, -1)) / 16)       # k = 0 at the centre


@pytest.mark.parametrize("accel,cf", [(4, 0.08), (8, 0.04), (2, 0.15)])
@pytest.mark.parametrize("maker", [dm.uniform1d_mask, dm.random1d_mask])
def test_line_masks_sample_what_they_claim(maker, accel, cf):
    n = 64
    mask = maker(n, accel, cf, seed=3)
    cols = mask.any(0)
    assert (mask == cols[None, :]).all()                     # whole columns, same in every row
    assert int(cols.sum()) == round(n / accel)               # no duplicate lines: acceleration is exact
    n_center = round(n * cf)
    start = (n - n_center + 1) // 2
    assert cols[start:start + n_center].all()                # fully sampled centre, around k = 0
    assert start <= n // 2 < start + n_center


def test_variable_density_mask():
    mask = dm.variable_density2d_mask(64, 8, center_radius=0.05, seed=0)
    assert int(mask.sum()) == round(64 * 64 / 8)
    assert mask[32, 32] and mask[30:35, 30:35].all()
    k = torch.arange(64) - 32
    r = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    assert mask[r < 16].float().mean() > 2 * mask[r >= 16].float().mean()   # denser near the centre


def test_masks_are_seeded():
    assert torch.equal(dm.random1d_mask(64, 4, 0.08, seed=5), dm.random1d_mask(64, 4, 0.08, seed=5))
    assert not torch.equal(dm.random1d_mask(64, 4, 0.08, seed=5), dm.random1d_mask(64, 4, 0.08, seed=6))


def test_finite_difference_boundaries():
    x = torch.arange(4.0).reshape(4, 1, 1)
    assert dm.FiniteDifference(-3, "neumann")(x).flatten().tolist() == [1, 1, 1, 0]
    assert dm.FiniteDifference(-3, "periodic")(x).flatten().tolist() == [1, 1, 1, -3]
