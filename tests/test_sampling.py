"""Samplers: known answers on Gaussian data with the exact denoiser, measurement consistency,
carried ADMM state, and smoke runs of every method."""
import math

import pytest
import torch

import dmbir_edu as dm
from dmbir_edu.prior import DEFAULT_UNET, GaussianPrior, Prior, ve_sigmas
from dmbir_edu.sampling import dds, diffusion_mbir, sample, slicewise


def expected_variance(prior, n_steps, snr):
    """Exact variance of the PC sampler's output for N(m, s^2) data with the exact score.

    Per step: predictor var <- (1 - Delta / v)^2 var + Delta, Delta = sigma_i^2 - sigma_{i+1}^2,
    v = s^2 + sigma_i^2 (the score is -(x - m) / v); corrector at v' = s^2 + sigma_{i+1}^2 with
    its step eps = 2 snr^2 ||xi||^2 / ||score||^2 -> 2 snr^2 v'^2 / var for many pixels:
    var <- (1 - eps / v')^2 var + 2 eps.
    """
    s2 = prior.std**2
    sig = ve_sigmas(n_steps, prior.sigma_min, prior.sigma_max).tolist() + [0.0]
    var = prior.sigma_max**2
    for a, b in zip(sig, sig[1:]):
        delta, v = a**2 - b**2, s2 + a**2
        var = (1 - delta / v) ** 2 * var + (delta if b > 0 else 0.0)
        if b > 0:
            v = s2 + b**2
            eps = 2 * snr**2 * v**2 / var
            var = (1 - eps / v) ** 2 * var + 2 * eps
    return var


@pytest.mark.parametrize("snr", [0.0, 0.16])
def test_pc_sampler_matches_gaussian_known_answer(snr):
    prior = GaussianPrior(16, mean=0.5, std=0.2)
    n_steps = 300
    x = sample(prior, 64, n_steps, snr=snr, generator=torch.Generator().manual_seed(0), progress=False)
    n = x.numel()                                   # i.i.d. pixels: the exact prior factorizes
    var_expected = expected_variance(prior, n_steps, snr)
    se_mean = math.sqrt(var_expected / n)
    se_var = var_expected * math.sqrt(2 / (n - 1))
    print(f"snr={snr}: mean {x.mean():.5f} (0.5 +- {se_mean:.5f}), var {x.var():.6f} "
          f"(expected {var_expected:.6f} +- {se_var:.6f}; data var {prior.std**2})")
    assert abs(float(x.mean()) - 0.5) < 4 * se_mean
    assert abs(float(x.var()) - var_expected) < 4 * se_var
    # the expected variance itself is close to the data's: the discretization bias is small
    assert abs(var_expected / prior.std**2 - 1) < 0.06


def gaussian_ct_problem(size=16, depth=8, n_views=8, seed=1):
    prior = GaussianPrior(size, mean=0.5, std=0.2)
    g = torch.Generator().manual_seed(seed)
    x_true = 0.5 + 0.2 * torch.randn(depth, size, size, generator=g)
    A = dm.ParallelBeamCT(size, dm.sparse_view_angles(n_views))
    return prior, A, x_true, A(x_true)


@pytest.mark.parametrize("method", ["diffusionmbir", "slicewise", "dds"])
def test_samplers_are_consistent_with_the_measurements(method):
    prior, A, x_true, y = gaussian_ct_problem()
    g = torch.Generator().manual_seed(0)
    kw = dict(n_steps=60, final_correction=False, generator=g, progress=False)
    if method != "slicewise":
        kw.update(lam=0.0, rho=1.0)
    x = dm.reconstruct(y, A, method, prior=prior, **kw)
    x_prior = sample(prior, x.shape[0], 60, generator=g, progress=False)       # no data at all
    rel = lambda v: float((A(v) - y).norm() / y.norm())
    print(f"{method}: relative residual {rel(x):.4f} (unconditional sample: {rel(x_prior):.4f})")
    assert rel(x) < 0.05 < rel(x_prior)


def test_admm_state_is_carried_across_diffusion_steps():
    prior, A, x_true, y = gaussian_ct_problem()
    states = []
    diffusion_mbir(y, A, prior, n_steps=10, lam=0.05, rho=1.0, generator=torch.Generator().manual_seed(0),
                   progress=False, callback=lambda i, x, s: states.append(s))
    assert len(states) == 10
    # u_{k+1} = u_k + D_z x_{k+1} - z_{k+1}: the dual accumulates, it does not restart
    assert all(float(b.u[0].abs().sum()) > 0 for b in states[1:])
    assert not torch.equal(states[3].u[0], states[4].u[0])
    # carrying vs resetting (z, u) changes the result
    runs = [diffusion_mbir(y, A, prior, n_steps=10, lam=0.05, rho=1.0, reset_admm=r, progress=False,
                           generator=torch.Generator().manual_seed(0)) for r in (False, True)]
    assert not torch.allclose(*runs)


def tiny_prior(size=16):
    cfg = dict(DEFAULT_UNET, sample_size=size)
    torch.manual_seed(0)
    return Prior(cfg).eval().requires_grad_(False)


@pytest.mark.parametrize("method", ["slicewise", "diffusionmbir", "dds"])
@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_smoke_every_method_with_a_network(method, modality):
    prior = tiny_prior()
    x_true = dm.data.phantom(dm.data.TEST_SEEDS[0], 16, 4)
    A = (dm.ParallelBeamCT(16, dm.sparse_view_angles(4)) if modality == "ct"
         else dm.CartesianMRI(dm.uniform1d_mask(16, 4, 0.125)))
    x = dm.reconstruct(A(x_true), A, method, prior=prior, n_steps=3, generator=torch.Generator().manual_seed(0),
                       progress=False)
    assert x.shape == x_true.shape and torch.isfinite(x).all()


def test_prior_size_mismatch_is_a_clear_error():
    A = dm.ParallelBeamCT(32, dm.sparse_view_angles(4))
    with pytest.raises(ValueError, match="trained on 16x16"):
        dm.reconstruct(torch.zeros(2, *A.measurement_shape), A, "dds", prior=tiny_prior(16))
