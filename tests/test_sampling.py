"""Samplers: known answers on Gaussian data with the exact denoiser, measurement consistency,
carried ADMM state, and smoke runs of every method; DPS's per-slice guidance step; DDS's limits with
nothing measured (eta = 0: the exact DDIM map; eta = 1: the fresh-noise variance); DDS vs ADMM-TV at
their defaults on a validation volume."""
import math

import pytest
import torch

import dmbir_edu as dm
import dmbir_edu.sampling
import dmbir_edu.variants
from dmbir_edu.prior import DEFAULT_UNET, GaussianPrior, Prior, ve_sigmas
from dmbir_edu.sampling import diffusion_mbir, sample
from dmbir_edu.variants import dds_variant, diffusion_mbir_variant


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
    kw = dict(n_steps=60, generator=g, progress=False)
    if method != "dds":
        kw.update(final_correction=False)              # DDS has none
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
    # u_{k+1} = u_k + D_z x_{k+1} - v_{k+1}: the dual accumulates, it does not restart
    assert all(float(b.u[0].abs().sum()) > 0 for b in states[1:])
    assert not torch.equal(states[3].u[0], states[4].u[0])
    # carrying vs resetting (v, u) changes the result
    runs = [diffusion_mbir_variant(y, A, prior, n_steps=10, lam=0.05, rho=1.0, reset_admm=r, progress=False,
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


def slice_repeating_noise():
    """A stand-in for ``operators.randn_like`` (as ``sampling`` sees it): the k-th call draws ONE slice
    of noise from a CPU generator seeded k and repeats it over the depth, so a volume of D slices and a single slice
    see the same noise in every slice, call for call."""
    calls = iter(range(10**6))

    def randn_like(x, generator=None):
        g = torch.Generator().manual_seed(next(calls))
        one = torch.randn((1, *x.shape[-2:]), generator=g, dtype=x.dtype)
        return one.expand(x.shape).clone().to(x.device)

    return randn_like


def test_dps_step_is_per_slice_independent_of_depth(monkeypatch):
    """DPS takes one residual norm per axial slice, so slice k of a D-slice run equals a run on slice
    k alone given the same noise (the exact Gaussian denoiser acts pixel by pixel and MRI slice by
    slice, so nothing else couples the slices).

    Exact design: float64, ``randn_like`` replaced by noise that repeats one slice's draw over the
    depth (``slice_repeating_noise``), fresh for every run. Tolerance 1e-10: the runs differ only in
    batching (measured difference 0.0); float64 round-off over 10 steps is ~1e-14.

    The old global norm ||y - A x0_hat|| over the whole volume fails this: for D identical slices it
    equals sqrt(D) times each slice's norm, so every slice's guidance step is divided by sqrt(D),
    i.e. the old run on 4 copies is the per-slice run with zeta / 2. That run differs from zeta's by
    ~0.18 (asserted > 1e-3, far above the tolerance), so the comparison would catch it. (A copy of the
    old loop with one global norm, run outside this file on the 4 different slices, differed from the
    single-slice runs by 0.20.)
    """
    prior = GaussianPrior(16, mean=0.5, std=0.2)
    A = dm.CartesianMRI(dm.uniform1d_mask(16, 4))
    x_true = dm.data.phantom(dm.data.VALIDATION_SEEDS[0], 16, 4).double()
    y = A(x_true)

    def run(y, zeta=1.0):
        monkeypatch.setattr(dm.sampling, "randn_like", slice_repeating_noise())
        return dm.sampling.dps(y, A, prior, n_steps=10, zeta=zeta, progress=False)

    singles = torch.cat([run(y[k:k + 1]) for k in range(4)])
    volume = run(y)                                                 # 4 different slices at once
    copies = run(y[:1].expand(4, -1, -1).clone())                   # 4 copies of slice 0
    print(f"volume vs singles {float((volume - singles).abs().max()):.2e}, "
          f"copies vs single {float((copies - singles[:1]).abs().max()):.2e}")
    torch.testing.assert_close(volume, singles, rtol=0, atol=1e-10)
    torch.testing.assert_close(copies, singles[:1].expand(4, -1, -1), rtol=0, atol=1e-10)
    assert not torch.allclose(singles[0], singles[1])               # the slices did differ
    old_on_copies = run(y[:1], zeta=1.0 / math.sqrt(4))             # what the global norm would give
    gap = float((old_on_copies - singles[:1]).abs().max())
    print(f"global-norm (old) run on 4 copies vs per-slice: {gap:.3f}")
    assert gap > 1e-3


class NothingMeasured(dm.operators.LinearOperator):
    """A = 0 on size x size slices (what an all-False MRI mask would be; ``CartesianMRI`` refuses one):
    y = 0 and A^T A = 0, so a sampler sees only the prior."""

    def __init__(self, size):
        self.image_size, self.measurement_shape = size, (size, size)

    def __call__(self, x):
        return torch.zeros_like(x)

    def adjoint(self, y):
        return torch.zeros_like(y.real)


def nothing_measured(depth, dtype=torch.float64, size=16):
    """A = 0, y = 0 (``NothingMeasured``); DDS's data step must then leave x0_hat alone."""
    A = NothingMeasured(size)
    return A, A(torch.zeros(depth, size, size, dtype=dtype))


def test_data_step_is_the_identity_when_nothing_is_measured():
    """With A = 0 the per-slice CG of DDS without coupling (``mbir.data_consistency``) has rhs = 0 and
    residual 0, so every slice is 'converged' and its step is alpha = 0: x0_hat comes back bit for bit
    (torch.equal, no tolerance)."""
    from dmbir_edu.mbir import data_consistency
    A, y = nothing_measured(3)
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = data_consistency(x, A.adjoint(y), A, 5)
    assert torch.equal(out, x)


def ddim_gain(prior, n_steps):
    """DDS at eta = 0 with A = 0 on N(m, s^2) data: x0_hat - m = c_i (x_i - m), c_i = s^2 / (s^2 + sigma_i^2),
    eps_hat = (x_i - x0_hat) / sigma_i, x_{i+1} = x0_hat + sigma_{i+1} eps_hat, hence
    x_{i+1} - m = (x_i - m) (s^2 + sigma_i sigma_{i+1}) / (s^2 + sigma_i^2), and the output is the last
    x0_hat = m + c_N (x_N - m). Returns K with output - m = K (x_T - m)."""
    s2 = prior.std**2
    sig = ve_sigmas(n_steps, prior.sigma_min, prior.sigma_max).tolist()
    K = 1.0
    for a, b in zip(sig, sig[1:]):
        K *= (s2 + a * b) / (s2 + a * a)
    return K * s2 / (s2 + sig[-1] ** 2)


def test_dds_eta0_is_the_exact_deterministic_ddim_map(monkeypatch):
    """eta = 0 with nothing measured: the output is m + K (x_T - m) (``ddim_gain``), x_T = sigma_max xi the
    generator's first draw (reproduced here from the same seed). float64; bound rtol 1e-9 / atol 1e-12:
    round-off over 50 steps is ~1e-14 (measured max relative error ~1e-15), while a wrong step (e.g.
    dropping the sigma_i sigma_{i+1} term, which makes K ~ 0) is off by O(|x_T - m| K) ~ 0.6.
    The later draws do not matter: replacing every draw after x_T by other noise gives the same output."""
    prior = GaussianPrior(16, mean=0.5, std=0.2)
    A, y = nothing_measured(4)
    K = ddim_gain(prior, 50)
    outs = {}
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        out = dds_variant(y, A, prior, eta=0.0, axes=None, generator=g, progress=False)
        x_T = prior.sigma_max * torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        torch.testing.assert_close(out, prior.mean + K * (x_T - prior.mean), rtol=1e-9, atol=1e-12)
        outs[seed] = out, x_T
    assert not torch.allclose(outs[0][0], outs[1][0])               # different x_T, different output ...
    torch.testing.assert_close(outs[0][0] - outs[1][0], K * (outs[0][1] - outs[1][1]), rtol=1e-9, atol=1e-12)
    # ... and only through x_T: keep seed 0's first draw, make every later draw different noise
    draws = [outs[0][1] / prior.sigma_max]
    other = torch.Generator().manual_seed(123)
    monkeypatch.setattr(dm.variants, "randn_like", lambda x, generator=None: draws.pop() if draws else
                        torch.randn(x.shape, generator=other, dtype=x.dtype))
    out = dds_variant(y, A, prior, eta=0.0, axes=None, progress=False)
    torch.testing.assert_close(out, outs[0][0], rtol=1e-9, atol=1e-12)


def test_dds_eta1_variance_follows_the_fresh_noise_recursion():
    """eta = 1 with nothing measured: x_{i+1} = m + c_i (x_i - m) + sigma_{i+1} xi, so per pixel the mean
    follows mu_{i+1} = m + c_i (mu_i - m) from mu_1 = 0 and the variance v_{i+1} = c_i^2 v_i + sigma_{i+1}^2
    from v_1 = sigma_max^2; the output x0_hat has mean m + c_N (mu_N - m) and variance c_N^2 v_N.

    64 slices of 16 x 16 = 16384 i.i.d. Gaussian pixels; bounds 4 standard errors, with
    se(mean) = sqrt(v / n) and se(var) = v sqrt(2 / (n - 1)) (Gaussian output: a linear map of Gaussian
    draws). 4 se fails by chance with probability ~6e-5. The recursion's variance (0.0184) is far from
    the data's s^2 = 0.04 (~100 se): DDS at eta = 1 is not an exact sampler, and the test tells them apart.
    """
    prior = GaussianPrior(16, mean=0.5, std=0.2)
    A, y = nothing_measured(64)
    s2, m = prior.std**2, prior.mean
    sig = ve_sigmas(50, prior.sigma_min, prior.sigma_max).tolist()
    c = [s2 / (s2 + a * a) for a in sig]
    mu, var = 0.0, sig[0] ** 2
    for i in range(len(sig) - 1):
        mu, var = m + c[i] * (mu - m), c[i] ** 2 * var + sig[i + 1] ** 2
    mu, var = m + c[-1] * (mu - m), c[-1] ** 2 * var
    x = dds_variant(y, A, prior, eta=1.0, axes=None, generator=torch.Generator().manual_seed(0), progress=False)
    n = x.numel()
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / (n - 1))
    print(f"mean {float(x.mean()):.5f} (expected {mu:.5f} +- {se_mean:.5f}), "
          f"var {float(x.var()):.6f} (expected {var:.6f} +- {se_var:.6f}; data var {s2})")
    assert abs(float(x.mean()) - mu) < 4 * se_mean
    assert abs(float(x.var()) - var) < 4 * se_var
    assert abs(var - s2) > 20 * se_var                  # the test can tell this recursion from exact sampling


@pytest.mark.parametrize("eta", [-0.1, 1.1])
def test_dds_eta_outside_0_1_is_refused(eta):
    """eta weighs the fresh noise in eta xi + sqrt(1 - eta^2) eps_hat: above 1 the square root is NaN (a
    NaN volume, not an error, unless refused), and a negative weight has no meaning; [0, 1] is the
    documented range, so both sides must raise a ValueError naming eta."""
    prior = GaussianPrior(16)
    A, y = nothing_measured(2)
    with pytest.raises(ValueError, match="eta"):
        dds_variant(y, A, prior, eta=eta, axes=None, progress=False)


def test_dds_defaults_beat_admm_tv_defaults_on_validation_ct():
    """DDS with its bare defaults (50 steps, lam / rho scaled by the operator) beats ADMM-TV with its
    bare defaults in mean per-axis PSNR, 8-view CT, central 8 slices of validation phantom
    VALIDATION_SEEDS[0] at 64^2: the book's claim that the learned prior helps, at the defaults users get.
    Strict comparison, no margin. Measured: DDS 28.80 dB (seeds 0 / 1 / 2: 28.80 / 28.76 / 28.72),
    ADMM-TV 20.75 dB; 7-15 s on this 2-core CPU, most of it the 400 slice-NFEs of DDS."""
    x = dm.data.phantom(dm.data.VALIDATION_SEEDS[0], 64)[28:36]
    A = dm.ParallelBeamCT(64, dm.sparse_view_angles(8))
    y = A(x)
    mean_psnr = lambda v: sum(r["psnr"] for r in dm.metrics.per_axis(v, x).values()) / 3
    tv = mean_psnr(dm.reconstruct(y, A, "admm_tv"))
    ddsx = mean_psnr(dm.reconstruct(y, A, "dds", prior=dm.load_prior("phantom64"),
                                    generator=torch.Generator().manual_seed(0), progress=False))
    print(f"8-view CT, validation phantom: DDS {ddsx:.2f} dB, ADMM-TV {tv:.2f} dB (mean over axes)")
    assert ddsx > tv
