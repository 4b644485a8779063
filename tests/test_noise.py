"""Measurement noise: the Poisson CT model, white Gaussian noise, complex k-space noise.

Moments are checked against their formulas within 5 standard errors of the sample estimate
(a false alarm about once in 10^6 runs; all draws are seeded, so a run is reproducible).
"""
import math

import pytest
import torch

import dmbir_edu as dm
from dmbir_edu.ct import MIN_COUNTS, MU_UNIT_PER_MM, gaussian_noise, poisson_noise
from dmbir_edu.mri import complex_gaussian_noise

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
N_RAYS = 200_000
Z = 5                                    # tolerance, in standard errors


def within(estimate, expected, standard_error, what):
    assert abs(estimate - expected) <= Z * standard_error, (
        f"{what}: {estimate:.6g}, expected {expected:.6g} +- {Z} x {standard_error:.3g}")


def constant_sinogram(value, n=N_RAYS):
    return torch.full((n // 100, 100), float(value), dtype=torch.float64)


def test_water_and_unit_attenuation():
    assert MU_UNIT_PER_MM == pytest.approx(2 * dm.ct.MU_WATER_PER_MM)      # value 1 = +1000 HU = 2 x water
    assert 0.019 <= dm.ct.MU_WATER_PER_MM <= 0.020                        # ~70 keV (NIST XCOM)


@pytest.mark.parametrize("I0,p", [(1e4, 2.0), (1e5, 6.0), (50.0, 1.0)])
def test_poisson_counts_have_mean_and_variance_I0_exp_minus_p(I0, p):
    pixel_mm = 5.0
    mu = MU_UNIT_PER_MM * pixel_mm
    y = constant_sinogram(p / mu)                    # optical depth p on every ray
    out = poisson_noise(y, I0=I0, pixel_mm=pixel_mm, generator=torch.Generator().manual_seed(1))
    N = I0 * torch.exp(-mu * out)                    # undo the log transform: the counts
    assert torch.allclose(N, N.round(), atol=1e-6), "the result is not -log(integer counts / I0) / mu"
    lam = I0 * math.exp(-p)
    within(float(N.mean()), lam, math.sqrt(lam / N.numel()), "mean count")
    within(float(N.var()), lam, math.sqrt((lam + 2 * lam**2) / N.numel()), "count variance")   # Poisson mu_4


def test_poisson_log_has_delta_method_mean_and_variance():
    """Mean y + 1 / (2 lambda mu), variance 1 / (lambda mu^2), lambda = I0 exp(-p); at lambda = 1000
    and 200 000 rays the bias is 7 standard errors, so the mean test also sees it."""
    I0, pixel_mm, lam = 1e5, 6.25, 1000.0
    mu = MU_UNIT_PER_MM * pixel_mm
    p = math.log(I0 / lam)
    y = constant_sinogram(p / mu)
    out = poisson_noise(y, I0=I0, pixel_mm=pixel_mm, generator=torch.Generator().manual_seed(2))
    var = 1 / (lam * mu**2)
    within(float(out.mean()), p / mu + 1 / (2 * lam * mu), math.sqrt(var / out.numel()), "mean of the log")
    within(float(out.var()), var, var * math.sqrt(2 / out.numel()), "variance of the log")


def test_poisson_noise_grows_with_attenuation_and_falls_with_dose():
    g = torch.Generator().manual_seed(3)
    y = torch.stack([constant_sinogram(v, 20_000) for v in (20.0, 40.0)])   # (2, 200, 100): thin, thick
    err = {I0: (poisson_noise(y, I0=I0, generator=g) - y).flatten(1).std(1) for I0 in (1e4, 1e5)}
    assert (err[1e4][1] > err[1e4][0]) and (err[1e5][1] > err[1e5][0])
    ratio = float(err[1e4][0] / err[1e5][0])
    assert 2.9 < ratio < 3.4, f"10 x fewer photons should give sqrt(10) = 3.16 x the noise, got {ratio:.2f}"


def test_poisson_zero_counts_are_raised_to_half_a_photon():
    I0, pixel_mm = 1e4, 5.0
    y = constant_sinogram(1e3, 10_000)                # p = 195: lambda ~ 1e-81, every count is 0
    out = poisson_noise(y, I0=I0, pixel_mm=pixel_mm, generator=torch.Generator().manual_seed(4))
    assert torch.isfinite(out).all()
    expected = math.log(I0 / MIN_COUNTS) / (MU_UNIT_PER_MM * pixel_mm)
    assert torch.allclose(out, torch.full_like(out, expected))


def test_gaussian_noise_has_mean_zero_and_variance_sigma_squared():
    sigma = 0.3
    y = constant_sinogram(2.0)
    n = gaussian_noise(y, sigma, generator=torch.Generator().manual_seed(5)) - y
    within(float(n.mean()), 0.0, sigma / math.sqrt(n.numel()), "mean")
    within(float(n.var()), sigma**2, sigma**2 * math.sqrt(2 / n.numel()), "variance")
    assert torch.equal(gaussian_noise(y, 0.0), y)


def mri_measurement(mask, depth=20, size=64, dtype=torch.float64):
    M = dm.CartesianMRI(mask)
    x = torch.rand(depth, size, size, generator=torch.Generator().manual_seed(6), dtype=dtype)
    return M, M(x)


@pytest.mark.parametrize("snr_db", [30.0, 10.0])
def test_complex_noise_power_snr_and_support(snr_db):
    M, y = mri_measurement(dm.uniform1d_mask(64, 4, 0.08, seed=1))
    n = complex_gaussian_noise(y, snr_db, M.mask, generator=torch.Generator().manual_seed(7)) - y
    measured = M.mask.expand_as(y)
    assert torch.equal(n[~measured], torch.zeros_like(n[~measured])), "noise outside the mask"
    sigma2 = float((y.abs() ** 2)[measured].mean()) / 10 ** (snr_db / 10)
    nm, count = n[measured], int(measured.sum())
    within(float((nm.abs() ** 2).mean()), sigma2, sigma2 / math.sqrt(count), "E|n|^2")        # Var |n|^2 = sigma^4
    for part, name in ((nm.real, "real"), (nm.imag, "imaginary")):
        within(float(part.var()), sigma2 / 2, sigma2 / 2 * math.sqrt(2 / count), f"variance of the {name} part")
        within(float(part.mean()), 0.0, math.sqrt(sigma2 / 2 / count), f"mean of the {name} part")
    within(float((nm.real * nm.imag).mean()), 0.0, sigma2 / 2 / math.sqrt(count), "E[Re n Im n] (circularity)")
    snr = 10 * math.log10(float((y.abs() ** 2)[measured].mean()) / float((nm.abs() ** 2).mean()))
    assert abs(snr - snr_db) < 0.1


def test_complex_noise_snr_equals_image_domain_snr_at_full_sampling():
    """Full sampling: the k-space SNR is the image RMS over the RMS of the complex image noise;
    the zero-filled image (real part) keeps half of the noise power."""
    M, y = mri_measurement(torch.ones(64, 64, dtype=torch.bool), depth=10)
    x = M.adjoint(y)
    snr_db = 20.0
    noisy = complex_gaussian_noise(y, snr_db, M, generator=torch.Generator().manual_seed(8))
    image_noise = dm.mri.ifft2c(noisy - y)
    snr_image = 10 * math.log10(float(x.pow(2).mean() / image_noise.abs().pow(2).mean()))
    assert abs(snr_image - snr_db) < 0.1
    snr_zero_filled = 10 * math.log10(float(x.pow(2).mean() / (M.adjoint(noisy) - x).pow(2).mean()))
    assert abs(snr_zero_filled - (snr_db + 10 * math.log10(2))) < 0.1


def test_complex_noise_accepts_the_operator_and_infinite_snr():
    M, y = mri_measurement(dm.variable_density2d_mask(64, 8, seed=2), depth=2)
    a = complex_gaussian_noise(y, 25.0, M, generator=torch.Generator().manual_seed(9))
    b = complex_gaussian_noise(y, 25.0, M.mask, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert torch.equal(complex_gaussian_noise(y, math.inf, M), y)


def test_complex_noise_without_a_mask_uses_the_support_of_y_over_all_slices():
    M, y = mri_measurement(dm.uniform1d_mask(64, 4, 0.08, seed=1), depth=3)
    y[1] = 0                                          # an empty slice (air): still measured, still noisy
    explicit = complex_gaussian_noise(y, 20.0, M.mask, generator=torch.Generator().manual_seed(10))
    inferred = complex_gaussian_noise(y, 20.0, generator=torch.Generator().manual_seed(10))
    assert torch.equal(explicit, inferred)
    assert torch.equal(inferred[1] != 0, M.mask)
    assert torch.equal(complex_gaussian_noise(torch.zeros_like(y), 20.0), torch.zeros_like(y))   # no signal


def noisy_all(y_ct, y_mri, mask, seed):
    g = torch.Generator().manual_seed(seed)
    return (poisson_noise(y_ct, I0=1e4, generator=g), gaussian_noise(y_ct, 0.1, generator=g),
            complex_gaussian_noise(y_mri, 30.0, mask, generator=g))


def test_same_seed_gives_same_noise():
    A = dm.ParallelBeamCT(16, dm.sparse_view_angles(6))
    x = dm.data.phantom(dm.data.TEST_SEEDS[0], 16)[:2]
    M = dm.CartesianMRI(dm.uniform1d_mask(16, 4, 0.1, seed=0))
    first, again, other = (noisy_all(A(x), M(x), M.mask, seed) for seed in (0, 0, 1))
    for a, b, c in zip(first, again, other):
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_follows_the_device_and_dtype_of_y(device, dtype):
    A = dm.ParallelBeamCT(16, dm.sparse_view_angles(6))
    x = dm.data.phantom(dm.data.TEST_SEEDS[0], 16)[:2].to(dtype)
    M = dm.CartesianMRI(dm.uniform1d_mask(16, 4, 0.1, seed=0))
    y_ct, y_mri = A(x), M(x)
    on_cpu = noisy_all(y_ct, y_mri, M.mask, seed=0)
    on_device = noisy_all(y_ct.to(device), y_mri.to(device), M.mask, seed=0)   # CPU generator, y on device
    for a, b, ref in zip(on_cpu, on_device, (y_ct, y_ct, y_mri)):
        assert a.dtype == ref.dtype and a.shape == ref.shape
        assert b.device.type == device and b.dtype == ref.dtype
        assert torch.allclose(b.cpu(), a, atol=1e-5 if dtype == torch.float32 else 1e-12)   # same numbers
    if device != "cpu":                               # a generator-free call draws on the device itself
        assert poisson_noise(y_ct.to(device)).device.type == device


y0 = torch.zeros(4, 5)
k0 = torch.zeros(4, 4, dtype=torch.complex64)
mask0 = torch.ones(4, 4, dtype=torch.bool)


@pytest.mark.parametrize("call,message", [
    (lambda: poisson_noise(y0, I0=0), r"I0 \(incident photons per ray\) must be a finite number > 0, got 0"),
    (lambda: poisson_noise(y0, I0=-1e5), "I0"),
    (lambda: poisson_noise(y0, I0=math.inf), "I0"),
    (lambda: poisson_noise(y0, pixel_mm=0.0), r"pixel_mm \(pixel side in mm\) must be a finite number > 0"),
    (lambda: poisson_noise(y0, pixel_mm=math.nan), "pixel_mm"),
    (lambda: poisson_noise(y0.numpy()), "y must be a real floating-point torch.Tensor"),
    (lambda: poisson_noise(torch.zeros(3, dtype=torch.int64)), "got a torch.int64 tensor"),
    (lambda: poisson_noise(torch.full((3,), math.nan)), "y contains NaN or inf"),
    (lambda: gaussian_noise(y0, -0.1), "sigma must be a finite number >= 0, got -0.1"),
    (lambda: gaussian_noise(y0, None), "sigma"),
    (lambda: gaussian_noise(k0, 0.1), "y must be a real floating-point"),
    (lambda: complex_gaussian_noise(k0.real, 30.0, mask0), "y must be complex k-space"),
    (lambda: complex_gaussian_noise(k0, math.nan, mask0), "snr_db must be a number of decibels"),
    (lambda: complex_gaussian_noise(k0, -math.inf, mask0), "snr_db"),
    (lambda: complex_gaussian_noise(k0, 30.0, "uniform1d"), r"mask must be the operator's \(H, W\) sampling mask"),
    (lambda: complex_gaussian_noise(k0[0, 0], 30.0), r"y must have shape \(\.\.\., H, W\)"),
    (lambda: complex_gaussian_noise(k0, 30.0, torch.ones(8, 8, dtype=torch.bool)),
     r"y must have shape \(\.\.\., 8, 8\)"),
    (lambda: complex_gaussian_noise(k0, 30.0, torch.zeros(4, 4, dtype=torch.bool)), "mask samples no k-space point"),
    (lambda: complex_gaussian_noise(k0 + 1, 30.0, torch.eye(4, dtype=torch.bool)),
     "y has nonzero samples outside the mask"),
])
def test_bad_inputs_raise_a_helpful_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
