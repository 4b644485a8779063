"""The evidence protocol: data without the inverse crime, the effective MRI acceleration, the
along-z metrics, repeats with paired differences and a tie band, and the release's settings."""
import json
import math

import pytest
import torch

import dmbir_edu as dm
from dmbir_edu import book, experiments, metrics, mri, simulate, tables, variants


def gaussian_blob(n, s, depth=2):
    """exp(-r^2 / (2 s^2)) on an n x n grid of unit pixels centred on the origin (``ct``'s
    geometry), ``s`` in the pixels of an n / 2 grid; its line integral at detector offset d
    (in those pixels) is sqrt(2 pi) s exp(-d^2 / (2 s^2))."""
    c = (torch.arange(n, dtype=torch.float64) - n / 2 + 0.5) / 2          # centres in coarse pixels
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    return torch.exp(-r2 / (2 * s**2)).expand(depth, n, n).clone()


def test_finer_grid_data_match_the_analytic_line_integrals():
    """Line integrals of a Gaussian blob are known exactly: the data simulated on the finer grid
    and binned must match them (to the bin's width and the blob's sampling), and so must the
    coarse operator on the coarse average, while a wrong scale (bins summed, not averaged; fine
    pixels as coarse ones) would be off by a factor 2."""
    n, s = 32, 3.0
    A = dm.ParallelBeamCT(n, dm.sparse_view_angles(4))
    x, y = simulate.truth_and_data(A, gaussian_blob(2 * n, s))
    d = torch.arange(A.n_detectors, dtype=torch.float64) - A.n_detectors / 2 + 0.5
    exact = math.sqrt(2 * math.pi) * s * torch.exp(-d**2 / (2 * s**2))
    for data in (y, A(x)):
        err = float((data - exact).abs().max() / exact.max())
        assert err < 0.02, err
    assert x.shape == (1, n, n)


def test_the_inverse_crime_is_the_same_truth_with_the_operators_own_data():
    A = dm.ParallelBeamCT(32, dm.sparse_view_angles(6))
    x_fine = dm.data.phantom(0, 64, 4)
    x, y = simulate.truth_and_data(A, x_fine)
    x_c, y_c = simulate.truth_and_data(A, x_fine, crime=True)
    assert torch.equal(x, x_c) and torch.allclose(y_c, A(x)) and not torch.allclose(y, y_c)
    assert torch.equal(simulate.truth_and_data(A, x, factor=1)[1], A(x))      # factor 1: the old protocol


def test_mri_data_from_a_finer_image_are_its_central_frequencies():
    """A band-limited image (its spectrum inside the coarse band) gives exactly the coarse
    operator's k-space of its fully sampled coarse image."""
    n = 16
    k = torch.zeros(2 * n, 2 * n, dtype=torch.complex128)
    g = torch.Generator().manual_seed(0)
    k[n - 4:n + 5, n - 4:n + 5] = torch.randn(9, 9, generator=g, dtype=torch.complex128)
    x_fine = mri.ifft2c(k).real[None].repeat(2, 1, 1)           # real: the spectrum made Hermitian
    M = dm.CartesianMRI(dm.uniform1d_mask(n, 2, seed=0))
    x, y = simulate.truth_and_data(M, x_fine)
    torch.testing.assert_close(y, M(x), rtol=0, atol=1e-12)
    assert x.shape == (1, n, n)


def test_coarse_is_the_block_mean_and_refuses_blocks_that_do_not_fit():
    x = torch.arange(2 * 4 * 4, dtype=torch.float64).reshape(2, 4, 4)
    c = simulate.coarse(x)
    assert c.shape == (1, 2, 2) and c[0, 0, 0] == x[:, :2, :2].mean()
    with pytest.raises(ValueError, match="blocks"):
        simulate.coarse(torch.zeros(3, 4, 4))


def test_effective_acceleration_is_the_rank_of_the_real_problem():
    """Against the rank of the explicit real-constrained normal matrix, even and odd sizes."""
    g = torch.Generator().manual_seed(0)
    for n in (8, 9):
        mask = torch.rand(n, n, generator=g) < 0.3
        M = dm.CartesianMRI(mask)
        N = M.adjoint(M(torch.eye(n * n, dtype=torch.float64).reshape(-1, n, n))).reshape(n * n, n * n)
        assert mri.effective_acceleration(mask) == pytest.approx(n * n / torch.linalg.matrix_rank(N).item())
    M = dm.CartesianMRI(dm.uniform1d_mask(64, 4, center_fraction=0.08, seed=0))
    assert M.acceleration == 4 and M.effective_acceleration < 2.5          # the mirror doubles most lines


def test_flicker_ratio_and_dz_ratio_known_answers():
    x = torch.rand(6, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shared = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64).expand(6, 8, 8)
    assert metrics.flicker_ratio(x + 0.1 * shared, x) == pytest.approx(0, abs=1e-12)   # the same error everywhere
    iid = 0.1 * torch.randn(200, 8, 8, generator=torch.Generator().manual_seed(2))
    assert metrics.flicker_ratio(iid, torch.zeros_like(iid)) == pytest.approx(math.sqrt(2), rel=0.03)
    assert metrics.dz_ratio(x, x) == pytest.approx(1) and metrics.dz_ratio(2 * x, x) == pytest.approx(2)


def test_paired_differences_their_error_and_the_tie_band():
    rows = [dict(task="t", setting=1, noise="n", volume="v", repeat=k, method=m,
                 **{a: {"psnr": base + k * 0.1} for a in metrics.AXES})
            for k in range(4) for m, base in (("a", 20.0), ("b", 19.0))]
    rows[0]["axial"]["psnr"] += 0.3                               # one pair differs a bit more
    (diff, se, n), = tables.paired(rows, "a", "b").values()
    d = [1.1, 1.0, 1.0, 1.0]
    mean = sum(d) / 4
    assert n == 4 and diff == pytest.approx(mean)
    assert se == pytest.approx((sum((v - mean) ** 2 for v in d) / 3) ** 0.5 / 2)
    assert tables.verdict(diff, se) == "wins" and tables.verdict(-diff, se) == "loses"
    assert tables.verdict(0.1, 0.1) == "ties" and tables.verdict(5.0, float("nan")) == "ties"


def test_protocol_changes_are_checked_and_seed_means_one_repeat():
    p = experiments.protocol_of(experiments.REPORTED, seed=4, depth=2)
    assert p.repeats == (4,) and p.depth == 2 and p.fine == experiments.REPORTED.fine
    with pytest.raises(TypeError, match="nsteps"):
        experiments.protocol_of(nsteps=3)


def test_the_released_settings_convert_the_release_constants():
    A = dm.ParallelBeamCT(16, dm.sparse_view_angles(8))
    s = variants.released_settings(A)
    c, grid = math.pi / 16, 16 / 256
    assert s["lam"] == pytest.approx(0.04 / c * grid) and s["rho"] == pytest.approx(10 / c * grid)
    assert (s["corrector_sigma"], s["boundary"], s["n_cg"]) == ("current", "periodic", 1)
    with pytest.raises(ValueError, match="CT"):
        variants.released_settings(dm.CartesianMRI(dm.uniform1d_mask(16, 4)))


def test_a_run_reports_repeats_along_z_metrics_and_the_fair_baseline():
    rows = experiments.run("sparse_view", [4], ["admm_tv", "slicewise_cg1"], n_volumes=1, depth=3, size=16,
                           repeats=(0, 1), n_steps=2, progress=False, prior=dm.prior.GaussianPrior(16))
    assert [(r["method"], r["repeat"]) for r in rows] == [("admm_tv", 0), ("slicewise_cg1", 0),
                                                          ("admm_tv", 1), ("slicewise_cg1", 1)]
    assert all({"flicker", "dz_ratio"} <= set(r) for r in rows) and rows[1]["kwargs"]["n_cg"] == 1
    assert rows[0]["fine"] == 2 and rows[0]["axial"]["psnr"] == rows[2]["axial"]["psnr"]   # ADMM-TV: no seed


def test_flicker_of_independent_errors_on_few_slices_is_sqrt_2_d_minus_1_over_d():
    e = torch.randn(8, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert metrics.flicker_ratio(e, torch.zeros_like(e)) == pytest.approx(math.sqrt(2 * 7 / 8), rel=0.02)


def hand_cell(tmp_path, name="c"):
    """Rows of a saved cell: a beats b by 1 dB on every repeat but one (an error bar), c ties with b."""
    rows = [dict(task="t", setting=1, noise="none", volume="v", repeat=k, method=m, flicker=0.5, dz_ratio=1.0,
                 seconds=1.0, **{a: {"psnr": base + (0.2 if (m, k) == ("a", 0) else 0.0) + k * 0.1}
                                 for a in metrics.AXES})
            for k in range(3) for m, base in (("admm_tv", 20.0), ("a", 21.0), ("c", 20.0), ("dmbir_released", 5.0))]
    (tmp_path / f"{name}.json").write_text(json.dumps(rows))
    again = [r | {"axial": {"psnr": 30.0}, "coronal": {"psnr": 30.0}, "sagittal": {"psnr": 30.0}}
             for r in rows if r["method"] == "dmbir_released"]
    (tmp_path / f"{name}@released.json").write_text(json.dumps(again))
    return rows


def test_a_saved_cell_loads_with_its_remade_rows_and_compares_through_the_tie_band(tmp_path):
    hand_cell(tmp_path)
    rows = tables.load_cell(tmp_path, "c")
    assert len(rows) == 12 and tables.load_cell(tmp_path, "missing") == []
    recs = {r["method"]: r for r in tables.compared(rows, ("admm_tv",))}
    assert "vs admm_tv" not in recs["admm_tv"] and recs["a"]["n"] == 3
    assert recs["a"]["vs admm_tv"][2] == "wins" and recs["c"]["vs admm_tv"] == (0.0, 0.0, "ties")
    assert recs["dmbir_released"]["psnr"] == pytest.approx(30.0)        # the remade rows replaced the saved ones
    text = book.reported_verdict(rows, {"a": "Method A"})
    assert "Method A beats it (+1.07 ± 0.07 dB)" in text and "c ties with it (+0.00 ± 0.00 dB)" in text
    assert book.reported_verdict(None) == ""


def test_every_repeat_keeps_its_saved_volume(tmp_path):
    rows = [dict(task="t", setting=1, noise="none", method="m", volume="v", repeat=k, x=torch.zeros(2, 2, 2),
                 x_hat=torch.full((2, 2, 2), float(k))) for k in range(3)]
    keys = [tables.volume_key(r) for r in rows]
    tables.save_volumes(rows, tmp_path / "v.pt")
    _, x_hat = tables.load_volumes(tmp_path / "v.pt")
    assert keys[0] == "t/1/none/m/v" and keys[2] == "t/1/none/m/v/r2"
    assert [float(x_hat[k][0, 0, 0]) for k in keys] == [0.0, 1.0, 2.0]


def test_the_reported_cells_name_known_rows_and_run_with_changes():
    for name, cell in experiments.REPORTED_CELLS.items():
        assert set(cell.rows) <= set(experiments.ROWS), name
        assert cell.source in ("phantom", "real") and cell.noise in ("none", "realistic")
    old = experiments.protocol_of(experiments.REPORTED, **experiments.OLD_PROTOCOL)
    rows = experiments.run_cell("phantom_sv8@old", old, methods=["fbp"], size=16, depth=8, n_volumes=1)
    assert [(r["method"], r["setting"], r["fine"], r["repeat"]) for r in rows] == [("fbp", 8, 1, 0)]


def test_saved_rows_come_back_with_their_volumes(tmp_path):
    rows = [dict(task="t", setting=1, noise="none", method=m, volume="v", repeat=0, x=torch.zeros(2, 2, 2),
                 x_hat=torch.full((2, 2, 2), float(k))) for k, m in enumerate(("a", "b"))]
    tables.save_volumes(rows, tmp_path / "v.pt")               # takes the volumes out of the rows
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    back = tables.load_rows(tmp_path / "rows.json", tmp_path / "v.pt")
    assert [r["method"] for r in back] == ["a", "b"] and [float(r["x_hat"][0, 0, 0]) for r in back] == [0.0, 1.0]
    assert all(r["x"].dtype == torch.float32 and r["x"].shape == (2, 2, 2) for r in back)
