"""The command-line experiments and the benchmark harness run and print measured tables."""
import math
import re

import pytest
import torch

import dmbir_edu as dm
from dmbir_edu import bench, experiments


def test_experiments_command_prints_a_per_axis_table(capsys):
    experiments.main(["sparse_view", "--views", "4", "--methods", "fbp", "admm_tv", "--volumes", "1", "--size", "16"])
    out = capsys.readouterr().out
    assert "axial" in out and "coronal" in out and "sagittal" in out
    assert "admm_tv" in out and "fbp" in out


def test_experiments_command_saves_the_volumes_it_scored(tmp_path):
    """--save-volumes writes the reconstructions and truths (float16) that the saved rows scored,
    keyed by experiments.volume_key; the JSON rows stay free of tensors."""
    import json

    rows_file, volumes_file = tmp_path / "rows.json", tmp_path / "volumes.pt"
    experiments.main(["sparse_view", "--views", "4", "--methods", "fbp", "admm_tv", "--volumes", "1", "--size", "16",
                      "--noise", "none", "--save", str(rows_file), "--save-volumes", str(volumes_file)])
    rows = json.loads(rows_file.read_text())
    x, x_hat = experiments.load_volumes(volumes_file)
    assert sorted(x_hat) == sorted(experiments.volume_key(r) for r in rows) and "x_hat" not in rows[0]
    for r in rows:
        truth, recon = x[r["volume"]], x_hat[experiments.volume_key(r)]
        assert truth.shape == recon.shape == (16, 16, 16) and truth.dtype == torch.float32
        assert abs(dm.metrics.per_axis(recon, truth)["axial"]["psnr"] - r["axial"]["psnr"]) < 0.05   # float16


def test_experiments_rows_hold_measured_metrics():
    rows = experiments.run("mri", ["uniform1d-x4"], ["fbp", "admm_tv"], size=16, progress=False)
    assert [r["method"] for r in rows] == ["adjoint", "admm_tv"]           # MRI: zero-filled, not FBP
    zero_filled, tv = rows
    assert tv["axial"]["psnr"] > zero_filled["axial"]["psnr"]


def test_operator_settings():
    assert experiments.operator("sparse_view", 8, 16).n_angles == 8
    assert experiments.operator("limited_angle", 90, 16).n_angles == 90
    assert abs(experiments.operator("mri", "uniform1d-x4", 16).acceleration - 4) < 1e-9


def test_bench_runs_one_method_and_reports_memory():
    r = bench.run_one(dict(size=16, views=4, method="fbp", kwargs={}))
    assert r["seconds"] >= 0 and r["peak_mb"] > 0 and set(r["psnr"]) == {"axial", "coronal", "sagittal"}
    assert "cores" in bench.machine()


def test_step_curve_runs_every_variant_on_validation_seeds(capsys):
    """Every (steps, variant) cell is measured: a finite PSNR, printed as returned, and the three
    variants give three different numbers (a placeholder or one run copied to every row would not).
    PSNR of a 2-step run on 16^2 can be low, so only finiteness is required, not a range."""
    prior = dm.load_prior(image_size=16)                      # the 64 prior run on 16 x 16 slices
    curve = experiments.step_curve("sparse_view", 4, [2], depth=3, size=16, prior=prior)
    assert set(curve) == {(2, label) for label in experiments.STEP_VARIANTS}
    assert all(isinstance(v, float) and math.isfinite(v) for v in curve.values()), curve
    assert len(set(curve.values())) == len(experiments.STEP_VARIANTS), curve
    out = capsys.readouterr().out
    assert "admm_tv" in out and "reset" in out
    printed = {(int(n), label): float(v) for n, label, v in
               re.findall(r"(\d+) steps\s+(\S+)\s+mean PSNR (-?\d+\.\d+) dB", out)}
    assert set(printed) == set(curve)
    assert all(abs(printed[k] - curve[k]) <= 0.005 + 1e-9 for k in curve), (printed, curve)   # printed to 2 decimals


def test_variant_rows_pass_their_own_arguments_to_the_method():
    kw = experiments.method_kwargs("sparse_view", "dmbir_reset", n_steps=2)
    assert kw["reset_admm"] is True and kw["n_steps"] == 2 and experiments.method_of("dmbir_reset") == "diffusionmbir"
    prior = dm.load_prior(image_size=16)
    rows = experiments.run("sparse_view", [4], ["diffusionmbir", "dmbir_reset"], size=16, n_volumes=1, n_steps=2,
                           depth=3, prior=prior, progress=False, keep=True)
    carried, reset = rows
    assert reset["method"] == "dmbir_reset" and reset["kwargs"]["reset_admm"] is True
    assert not torch.equal(carried["x_hat"], reset["x_hat"])


def test_mri_is_tested_on_the_brain_and_validated_on_phantoms():
    assert list(experiments.test_set("mri", 16, depth=2)) == ["brain"]
    validation = experiments.test_set("mri", 16, n_volumes=1, seeds=dm.data.VALIDATION_SEEDS, depth=2)
    assert list(validation) == [f"phantom {dm.data.VALIDATION_SEEDS[0]}"]


def test_the_command_prints_the_numbers_of_run_all(capsys):
    """The appendix tabulates ``run_all``; the command line must print the same PSNR / SSIM for the same
    arguments (only the timing column, s/vol, differs between runs)."""
    # every table row (task, setting, noise, method, 6 metrics, s/vol, n) without s/vol, n
    def numbers(text):
        rows = [line.split() for line in text.splitlines()]
        return [r[:-2] for r in rows if len(r) == 12 and r[0] in experiments.JOBS]

    experiments.main(["all", "--views", "4", "--accel", "uniform1d-x4", "--methods", "fbp", "admm_tv",
                      "--volumes", "1", "--size", "16", "--depth", "4", "--noise", "none"])
    printed = numbers(capsys.readouterr().out)
    jobs = {"sparse_view": [4], "limited_angle": [90.0], "mri": ["uniform1d-x4"]}
    rows = experiments.run_all(jobs, ["fbp", "admm_tv"], size=16, n_volumes=1, depth=4, progress=False)
    assert len(printed) == 6 and printed == numbers(experiments.table(rows))


def test_real_test_and_validation_volumes_are_the_named_splits():
    assert list(experiments.test_set("sparse_view", 16, source="real")) == list(dm.data.REAL_SPLITS["ct"]["test"])
    assert list(experiments.test_set("mri", 16, source="real", split="validation")) == \
        list(dm.data.REAL_SPLITS["mr"]["validation"])
    for modality, split in dm.data.REAL_SPLITS.items():          # whole volumes: each in one split only
        names = [n for part in ("train", "validation", "test") for n in split[part]]
        assert len(names) == len(set(names)) and all(dm.data.REAL[n] == modality for n in names)
    with pytest.raises(ValueError, match="phantom"):
        experiments.test_set("sparse_view", 16, source="atlas")


def test_named_real_volumes_pick_those_of_the_split_only():
    assert list(experiments.test_set("sparse_view", 16, source="real", names=("abdomen",))) == ["abdomen"]
    assert list(experiments.test_set("mri", 16, source="real", names=("mni152",), depth=2)) == ["mni152"]
    with pytest.raises(ValueError, match="not all test volumes"):
        experiments.test_set("sparse_view", 16, source="real", names=("lung1",))      # a training volume
    with pytest.raises(ValueError, match="seeds"):
        experiments.test_set("sparse_view", 16, names=("abdomen",))                   # phantoms: by seed
    rows = experiments.run_cell("abdomen_sv8", experiments.REPORTED, methods=["fbp"], size=16, depth=8)
    assert {r["volume"] for r in rows} == {"abdomen"} and len(rows) == len(experiments.REPORTED.repeats)


def test_rows_carry_their_noise_level_and_noise_changes_only_the_noisy_rows():
    common = dict(methods=["fbp"], size=16, n_volumes=1, depth=4, progress=False, source="real")
    clean = experiments.run("sparse_view", [8], noise="none", **common)
    noisy = experiments.run("sparse_view", [8], noise="realistic", **common)
    again = experiments.run("sparse_view", [8], noise="realistic", **common)
    low_dose = experiments.run("sparse_view", [8], noise=1e3, **common)
    assert [r["noise"] for r in clean + noisy + low_dose] == ["noise-free", "I0=1e+05", "I0=1e+03"]
    assert noisy[0]["axial"] == again[0]["axial"]                        # the noise is seeded
    assert clean[0]["axial"]["psnr"] > noisy[0]["axial"]["psnr"] > low_dose[0]["axial"]["psnr"]
    mri = experiments.run("mri", ["uniform1d-x4"], noise="realistic", **common)
    assert mri[0]["noise"] == "SNR 30 dB" and mri[0]["method"] == "adjoint"
    assert "noise-free" in experiments.table(clean) and "I0=1e+05" in experiments.table(noisy, per_volume=True)
