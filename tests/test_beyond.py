"""What came after TV along z (chapter "Beyond TV along z"): ISCS noise has unit variance per voxel
and the stated correlation between neighbouring slices; the perpendicular-prior sampler and the
slab blending agree with known answers on exact Gaussian priors."""
import math

import pytest
import torch
from test_sampling import NothingMeasured  # A = 0, shared with the sampler tests

import dmbir_edu as dm
import dmbir_edu.prior_quality
from dmbir_edu.prior import GaussianPrior, ve_sigmas
from dmbir_edu.variants import dds_variant, iscs_noise, tweedie


@pytest.mark.parametrize("period", [1, 2, 4, 8])
def test_iscs_noise_unit_variance_and_neighbour_correlation(period):
    """200 draws of a (13, 10, 10) volume (an odd depth, so segments are cut at the ends), i.e.
    n = 20000 values per slice position d (pixels are independent and alike, the offset is drawn per
    draw): at every d the variance is 1 within 5 standard errors (se = sqrt(2 / n)), and every pair of
    neighbouring slices has correlation cos(pi / (2P)) within 5 se (the mean of n products of unit
    normals with correlation r: se = sqrt((1 + r^2) / n)). The slerp with Omega = pi / 2 keeps the
    squared weights summing to 1, so both hold exactly in distribution; a linear interpolation
    (weights 1 - t, t) would fail the variance at t = 1/2 (0.5 instead of 1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.empty(13, 10, 10, dtype=torch.float64)
    draws = torch.stack([iscs_noise(x, period, g) for _ in range(200)]).transpose(0, 1).reshape(13, -1)   # (D, n)
    n = draws.shape[1]
    var = draws.var(1)
    print(f"P={period}: variance per slice in [{float(var.min()):.4f}, {float(var.max()):.4f}]")
    assert float((var - 1).abs().max()) < 5 * math.sqrt(2 / n)
    r = (draws[1:] * draws[:-1]).mean(1)                                     # E[xi_d xi_{d+1}], unit variance
    want = math.cos(math.pi / (2 * period))
    print(f"P={period}: neighbour correlation in [{float(r.min()):.4f}, {float(r.max()):.4f}], stated {want:.4f}")
    assert float((r - want).abs().max()) < 5 * math.sqrt((1 + want**2) / n)
    assert float(draws.mean(1).abs().max()) < 5 / math.sqrt(n)


def test_iscs_is_refused_with_a_bad_period():
    with pytest.raises(ValueError, match="iscs"):
        iscs_noise(torch.zeros(4, 2, 2), 0)


def nothing_measured(size, depth):
    """A = 0 (``test_sampling.NothingMeasured``): y = 0 and A^T A = 0, so the sampler sees only the prior."""
    return NothingMeasured(size), torch.zeros(depth, size, size, dtype=torch.complex64)


def test_perpendicular_sampler_matches_the_gaussian_known_answer():
    """DDS at eta = 1 alternating an axial prior N(m_a(y, x), s^2) and a coronal prior N(m_c(z, x), s^2)
    (exact denoisers), nothing measured, on a 16^3 cube. Step i uses prior p_i (coronal on odd steps),
    so per voxel the mean follows mu <- m_i + c_i (mu - m_i) with m_i that prior's mean at the voxel,
    from mu = 0, and the variance v <- c_i^2 v + sigma_{i+1}^2 from sigma_max^2; the output x0_hat is
    m_N + c_N (mu_N - m_N), variance c_N^2 v_N. The means differ along y (axial) and z (coronal), so a
    plane permuted the wrong way (z and y swapped, or the volume not put back) breaks the mean by far
    more than the 4 standard errors allowed. The residual x - mu is N(0, v) at all 4096 voxels."""
    size = 16
    grid = torch.linspace(0, 1, size)
    m_a = (0.3 + 0.4 * grid)[:, None].expand(size, size).clone()        # axial prior's mean image: varies with y
    m_c = (0.7 - 0.4 * grid**2)[:, None].expand(size, size).clone()     # coronal prior's mean image: varies with z
    axial, coronal = GaussianPrior(size, mean=m_a, std=0.2), GaussianPrior(size, mean=m_c, std=0.2)
    A, y = nothing_measured(size, size)
    s2 = 0.04
    sig = ve_sigmas(50, axial.sigma_min, axial.sigma_max).tolist()
    mean_at = [m_a[None, :, :].expand(size, size, size), m_c[:, None, :].expand(size, size, size)]   # (z, y, x)
    mu, var = torch.zeros(size, size, size, dtype=torch.float64), sig[0] ** 2
    for i, a in enumerate(sig):
        c, m = s2 / (s2 + a * a), mean_at[i % 2].double()
        mu = m + c * (mu - m)
        var = c**2 * var + (sig[i + 1] ** 2 if i + 1 < len(sig) else 0.0)
    # the last step applied c to mu and var and added no noise: mu, var are those of the output x0_hat
    x = dds_variant(y, A, axial, eta=1.0, axes=None, prior_perp=coronal, plane="coronal",
            generator=torch.Generator().manual_seed(0), progress=False)
    r = x.double() - mu
    n = r.numel()
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / (n - 1))
    print(f"residual mean {float(r.mean()):.5f} (0 +- {se_mean:.5f}), var {float(r.var()):.6f} "
          f"(expected {var:.6f} +- {se_var:.6f})")
    assert abs(float(r.mean())) < 4 * se_mean
    assert abs(float(r.var()) - var) < 4 * se_var
    # the same run with the planes swapped in the expected mean: far off, so the test can tell
    wrong = x.double() - mu.transpose(0, 1)
    assert float(wrong.var()) > var + 20 * se_var


def test_slab_blending_of_an_exact_prior_is_the_slice_denoiser():
    """A slab prior of independent Gaussian slices denoises each slice of a run as the single-slice
    prior would, so blending the runs (every slice's mean over the runs that hold it, any stride and
    offset, ends padded) must give the single-slice estimate exactly; sagittal slices too."""
    x = torch.randn(9, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    one = GaussianPrior(8, mean=0.5, std=0.2)
    for k in (3, 5):
        slab = GaussianPrior(8, mean=0.5, std=0.2, channels=k)
        for plane, stride, offset in (("axial", 1, 0), ("axial", k, 2), ("sagittal", 2, 1)):
            torch.testing.assert_close(tweedie(x, 0.3, slab, plane, offset, stride), tweedie(x, 0.3, one, plane),
                                       rtol=0, atol=1e-12)


class FirstOfRun:
    """A 'slab prior' whose estimate of a run is its first slice, repeated: known blends."""
    channels = 3

    def denoise(self, runs, sigma):
        return runs[:, :1].expand_as(runs)


@pytest.mark.parametrize("stride, offset, want", [
    (1, 0, [0, 1 / 3, 1, 2, 3, 4]),     # every run; slice d: mean of runs d-2, d-1, d (padded: slice 0 repeated)
    (3, 0, [0, 0, 0, 3, 3, 3]),         # a partition into runs 0-2, 3-5
    (3, 1, [0, 1, 1, 1, 4, 4]),         # shifted by one: runs -2..0 (padded), 1-3, 4-6 (padded)
])
def test_slab_blending_averages_the_runs(stride, offset, want):
    x = torch.arange(6, dtype=torch.float64)[:, None, None].expand(6, 2, 2)
    out = tweedie(x, 0.1, FirstOfRun(), offset=offset, stride=stride)[:, 0, 0]
    torch.testing.assert_close(out, torch.tensor(want, dtype=torch.float64))


def test_slab_prior_starts_as_the_2d_prior():
    """train.widen: the slab-mixing convolution starts at zero, so the slab prior denoises each slice of
    a run exactly as the 2D prior it was widened from (float32 round-off)."""
    from dmbir_edu.train import widen

    two_d = dm.load_prior("phantom64")
    slab = dm.prior.Prior(two_d.config, two_d.sigma_min, two_d.sigma_max, slab=3).eval()
    slab.net.load_state_dict(widen(two_d.net.state_dict(), 3))
    noise = 0.1 * torch.randn(6, 64, 64, generator=torch.Generator().manual_seed(0))
    x = dm.data.phantom(dm.data.VALIDATION_SEEDS[0], 64)[30:36] + noise
    with torch.no_grad():
        torch.testing.assert_close(slab.denoise(x.reshape(2, 3, 64, 64), 0.1).reshape(6, 64, 64), two_d.denoise(x, 0.1),
                                   rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="slabs"):
        slab.denoise(x, 0.1)


def test_beyond_command_runs_its_rows(tmp_path, capsys):
    """``python -m dmbir_edu.experiments beyond`` at a toy size: every requested row once per ISCS
    spacing, the rows' settings are the package's (``experiments.ROWS``), NFE per slice counted
    from the steps, and the saved JSON holds what was printed."""
    from dmbir_edu import experiments

    out = tmp_path / "rows.json"
    experiments.main(["beyond", "--split", "validation", "--methods", "dds_2d", "dds_iscs", "--iscs", "2", "4",
                      "--steps", "2", "--depth", "8", "--save", str(out)])
    printed = capsys.readouterr().out
    rows = __import__("json").loads(out.read_text())
    assert [r["method"] for r in rows] == ["dds_2d", "dds_iscs_P2", "dds_iscs_P4"]
    assert [r["kwargs"].get("iscs") for r in rows] == [None, 2, 4]
    assert all(r["kwargs"]["axes"] is None and r["nfe_per_slice"] == 2 for r in rows)
    assert all(r["volume"] == f"phantom {dm.data.VALIDATION_SEEDS[0]}" for r in rows)
    assert "dds_iscs_P4" in printed and "NFE per slice" in printed


def test_coronal_prior_card_and_what_its_training_bought():
    """coronal64 ships with a card naming its plane, and on coronal slices of the TEST phantoms it
    denoises better than the axial prior it was fine-tuned from (sigma 0.1, fixed noise): the point
    of training a perpendicular prior. Measured here, not read from the card."""
    card = __import__("json").loads((dm.prior.WEIGHTS_DIR / "coronal64.json").read_text())
    assert card["plane"] == "coronal" and card["slab"] == 1 and card["init"] == "phantom64"
    coronal, axial = dm.load_prior("coronal64"), dm.load_prior("phantom64")
    x = dm.prior_quality.held_out_slices(dm.data.TEST_SEEDS, 64, 4, plane="coronal")
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    gain = [sum(dm.metrics.psnr(a, b) for a, b in zip(p.denoise(y, 0.1), x)) / len(x) for p in (coronal, axial)]
    print(f"coronal slices, sigma 0.1: coronal64 {gain[0]:.2f} dB, phantom64 {gain[1]:.2f} dB")
    assert gain[0] > gain[1]


def test_slab_prior_card_and_its_network():
    """slab64 ships with a card naming its slab, loads as an inflated 2D prior (its slab-mixing
    convolution trained away from zero), and its blended estimate of a held-out TEST phantom at
    sigma 0.1 is at least as good as the 2D prior it started from (measured here)."""
    card = __import__("json").loads((dm.prior.WEIGHTS_DIR / "slab64.json").read_text())
    assert card["slab"] == 3 and card["plane"] == "axial" and card["init"] == "phantom64"
    slab, two_d = dm.load_prior("slab64"), dm.load_prior("phantom64")
    assert slab.channels == 3 and float(slab.net.conv_in.mix.weight.abs().max()) > 0
    x = dm.data.phantom(dm.data.TEST_SEEDS[0], 64)[24:40]
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = [dm.metrics.psnr(tweedie(y, 0.1, p), x) for p in (slab, two_d)]
    print(f"16 test slices, sigma 0.1: slab64 {got[0]:.2f} dB, phantom64 {got[1]:.2f} dB")
    assert got[0] >= got[1]
