"""The book's helpers (dmbir_edu.book): verdict sentences on hand-made rows (the numbers worked out
by hand), of_cases' wording, show_source and clock; and the out-of-distribution volumes of
dmbir_edu.data (blocks, checkerboard) that chapter 8 used to make itself."""
import json
import time

import pytest
import torch

import dmbir_edu as dm
from dmbir_edu import book, data, tables


def row(volume, noise, prior, method, axial, coronal, sagittal, setting=8):
    return dict(setting=setting, noise=noise, volume=volume, prior=prior, method=method,
                axial={"psnr": axial}, coronal={"psnr": coronal}, sagittal={"psnr": sagittal})


FREE, NOISY = "noise-free", "realistic"


def hand_rows():
    """One volume at 8 views, noise-free and noisy; each row's three PSNRs average to a round number."""
    return [
        row("lung2", FREE, "none", "admm_tv", 30, 31, 32),          # mean 31
        row("lung2", FREE, "ct64", "slicewise", 28, 29, 30),        # 29
        row("lung2", FREE, "ct64", "dds", 31, 32, 33),              # 32
        row("lung2", FREE, "ct64", "diffusionmbir", 30, 30, 33),    # 31
        row("lung2", FREE, "phantom64", "dds", 29, 30, 31),         # 30
        row("lung2", FREE, "phantom64", "diffusionmbir", 30, 31, 32.5),   # 31.1666...
        row("lung2", NOISY, "none", "admm_tv", 29, 30, 31),         # 30: 1 dB lost
        row("lung2", NOISY, "ct64", "dds", 29, 30, 31),             # 30: 2 dB lost
        row("lung2", NOISY, "ct64", "diffusionmbir", 28, 30, 32),   # 30: 1 dB lost
        row("lung2", NOISY, "phantom64", "dds", 28, 29, 30),        # 29: 1 dB lost
        row("lung2", NOISY, "phantom64", "diffusionmbir", 30, 31, 32),    # 31: 0.1666... dB lost
    ]


def test_psnr_by_case_gap_and_versus():
    psnr = book.psnr_by_case(hand_rows())
    case = (8, FREE, "lung2")
    assert psnr[case + ("ct64", "dds")] == pytest.approx(32)
    assert psnr[(8, NOISY, "lung2", "none", "admm_tv")] == pytest.approx(30)
    assert book.gap(psnr, case, ("ct64", "dds"), ("none", "admm_tv")) == pytest.approx(1)
    assert book.versus(psnr, case, ("ct64", "dds"), ("none", "admm_tv"), "TV") == "1.0 dB above TV"
    assert book.versus(psnr, case, ("phantom64", "dds"), ("none", "admm_tv"), "TV") == "1.0 dB below TV"
    assert book.versus(psnr, case, ("ct64", "slicewise"), ("ct64", "dds"), "DDS") == "3.0 dB below DDS"


@pytest.mark.parametrize("k, n, words", [
    (1, 1, "the one case"), (0, 1, "no case"), (2, 2, "both cases"), (0, 2, "neither case"), (1, 2, "1 of the 2 cases"),
    (3, 3, "all 3 cases"), (0, 3, "none of the 3 cases"), (2, 5, "2 of the 5 cases")])
def test_of_cases_wording(k, n, words):
    assert book.of_cases(k, n) == words


CARD = {"train_volumes": ["lung1"], "images_seen": 12345, "validation_volumes": ["aorta"]}


def test_real_ct_verdict_on_hand_made_rows():
    text = book.real_ct_verdict(hand_rows(), "ct64", "phantom64", CARD, FREE, heading="3 steps, 4 slices",
                                phantom="On phantoms, nothing", names={"admm_tv": "TV", "dds": "DDS",
                                                                       "diffusionmbir": "DMBIR", "slicewise": "SW"},
                                setting="{} views")
    head, short = text.split("\n\n**In short: ")
    assert head == (
        "3 steps, 4 slices (one run, one seed: no margin below carries an error bar):\n\n"
        "- On **lung2** (8 views, noise-free): with `ct64`, DDS is 1.0 dB above TV and 3.0 dB above SW (ct64); "
        "DMBIR is 0.0 dB below TV and 2.0 dB above SW (ct64); with `phantom64`, DDS is 1.0 dB below TV; "
        "DMBIR is 0.2 dB above TV; `ct64` minus `phantom64`: DDS +2.0 dB, DMBIR -0.2 dB.\n"
        "- On **lung2** (8 views, realistic): with `ct64`, DDS is 0.0 dB below TV; DMBIR is 0.0 dB below TV; "
        "with `phantom64`, DDS is 1.0 dB below TV; DMBIR is 1.0 dB above TV; `ct64` minus `phantom64`: "
        "DDS +1.0 dB, DMBIR -1.0 dB.")
    # gains of ct64 over phantom64: +2, -1/6, +1, -1 -> 2 of the 4 pairs, from -1.00 to +2.00 dB;
    # TV beats both samplers with ct64 in neither case (ct64's DDS 32 > 31, a tie 30 = 30 is no win),
    # with phantom64 in neither case (DMBIR 31.17 > 31, 31 > 30)
    assert short == (
        "the prior trained on real CT, `ct64`, beats the phantom prior `phantom64` in 2 of the 4 (case, method) "
        "pairs (-1.00 to +2.00 dB); 3D ADMM-TV beats both diffusion methods in neither case with `ct64` and in "
        "neither case with `phantom64`: with `ct64`, a diffusion method beats 3D ADMM-TV in every case.** "
        "The realistic noise ($I_0 = 10^5$) lowers the PSNR, on average, by 1.00 dB for TV, 2.00 dB for DDS (ct64), "
        "1.00 dB for DMBIR (ct64), 1.00 dB for DDS (phantom64), 0.17 dB for DMBIR (phantom64). On phantoms, "
        "nothing. `phantom64` was trained only on procedural phantoms: what it adds to the data is what it learnt "
        "about their slices, not about a chest. Fine-tuning on the slices of lung1 paid off in some cases and not "
        "in others: a training set of one patient (12,345 images seen) is small, and the samplers' settings were "
        "chosen for `phantom64` on phantoms and checked for `ct64` on its validation volume (aorta).")


def test_real_ct_verdict_without_names_or_setting_and_a_ct_prior_that_always_wins():
    rows = [r for r in hand_rows() if r["prior"] != "phantom64"]
    rows += [r | dict(axial={"psnr": level}, coronal={"psnr": level}, sagittal={"psnr": level})
             for r in hand_rows() if r["prior"] == "phantom64"
             for level in [20 if r["noise"] == FREE else 20.003]]     # noise "gains" 0.003 dB: shown as 0.00
    text = book.real_ct_verdict(rows, "ct64", "phantom64", CARD | {"train_volumes": ["lung1", "lung3"]}, FREE,
                                heading="90° arc", phantom="P", adds="puts into the missing wedge")
    assert ("- On **lung2** (noise-free): with `ct64`, dds is 1.0 dB above admm_tv and 3.0 dB above slicewise "
            "(ct64)") in text
    assert "in every one of the 4 (case, method) pairs, by +10.00 to +12.00 dB" in text
    assert ("3D ADMM-TV beats both diffusion methods in neither case with `ct64` and in both cases with `phantom64`: "
            "with `ct64`, a diffusion method beats 3D ADMM-TV in every case.**") in text
    assert "0.00 dB for dds (phantom64)" in text and "-0.00" not in text
    assert text.endswith(
        "P. `phantom64` was trained only on procedural phantoms: what it puts into the missing wedge is what it learnt "
        "about their slices, not about a chest. The prior is the only difference between the paired rows, so "
        "training on real slices is what helped here: `ct64` has seen the slices of lung1, lung3, other patients, "
        "and what it puts into the missing wedge is closer to this scan than what `phantom64` learnt from phantoms; "
        "still, a training set of 2 patients (12,345 images seen) is small, and the samplers' settings were chosen "
        "for `phantom64` on phantoms and checked for `ct64` on its validation volume (aorta).")


def test_show_source_displays_the_functions_source(monkeypatch):
    display = pytest.importorskip("IPython.display")
    shown = []
    monkeypatch.setattr(display, "display", shown.append)
    book.show_source(book.of_cases, data.blocks)
    assert [type(m).__name__ for m in shown] == ["Markdown", "Markdown"]
    assert shown[0].data.startswith("```python\ndef of_cases(k, n):\n") and shown[0].data.endswith("```")
    assert '"neither case"' in shown[0].data and "def blocks(seed, size=64" in shown[1].data


def test_clock_returns_median_wall_and_cpu_seconds_of_the_timed_calls():
    calls = []

    def busy():
        calls.append(1)
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass

    wall, cpu = book.clock(busy, repeats=3)
    assert len(calls) == 4                                  # one warm-up call, then the three timed
    assert 0.015 < cpu <= wall + 0.01 and wall < 1
    book.wait("cpu")
    book.wait(None)                                         # nothing to wait for


# ---------------------------------------------------------------------------------------------
# data.blocks and data.checkerboard


@pytest.mark.parametrize("make", [data.blocks, data.checkerboard])
def test_ood_volumes_shape_range_and_seeds(make):
    v = make(3, 32, 12)
    assert v.shape == (12, 32, 32) and v.dtype == torch.float32
    assert float(v.min()) == 0 and 0 < float(v.max()) <= 1
    assert torch.equal(v, make(3, 32, 12)) and make(3, 16).shape == (16, 16, 16)
    with pytest.raises(ValueError, match="depth"):
        make(3, 32, 0)


def test_blocks_are_piecewise_constant_and_seeded():
    v = data.blocks(0, 32, 12)
    assert v.unique().numel() <= 11                         # background and at most 10 levels in [0.2, 1]
    assert float(v[v > 0].min()) >= 0.2
    assert not torch.equal(v, data.blocks(1, 32, 12))


def test_checkerboard_has_two_grey_levels_and_its_cells():
    v = data.checkerboard(0, 32, 12)
    assert sorted(v.unique().tolist()) == pytest.approx([0, 0.35, 0.65])
    assert data.checkerboard(0, 32, 12, cell=8).unique().numel() == 3
    offsets = {tuple(data.checkerboard(s, 32, 12).flatten().tolist()) for s in range(6)}
    assert len(offsets) > 1                                 # the seed draws the board's offset


def _chapter8_volumes(seed, size, depth):
    """The code chapter 8 (book/08_generalization.ipynb) ran before the volumes moved to data."""
    def grid(size, depth):
        r = torch.linspace(-1, 1, size)
        z = (torch.arange(depth) - (depth - 1) / 2) * float(r[1] - r[0])
        return torch.meshgrid(z, r, r, indexing="ij")

    def blocks(seed, size, depth, n_objects=10):
        g = torch.Generator().manual_seed(seed)
        z, y, x = grid(size, depth)
        vol = torch.zeros(depth, size, size)
        for i in range(n_objects):
            c = (torch.rand(3, generator=g) - 0.5) * torch.tensor([0.4, 1.2, 1.2])
            r = 0.08 + 0.3 * torch.rand(3, generator=g)
            level = 0.2 + 0.8 * torch.rand((), generator=g)
            if i % 2 == 0:
                inside = ((z - c[0]).abs() < r[0]) & ((y - c[1]).abs() < r[1]) & ((x - c[2]).abs() < r[2])
            else:
                inside = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < r[1] ** 2
            vol[inside] = level
        return vol

    def checkerboard(seed, size, depth, cell=4):
        g = torch.Generator().manual_seed(seed)
        z, y, x = grid(size, depth)
        iz, iy, ix = torch.meshgrid(torch.arange(depth), torch.arange(size), torch.arange(size), indexing="ij")
        offset = torch.randint(0, cell, (3,), generator=g)
        checks = (((iz + offset[0]) // cell + (iy + offset[1]) // cell + (ix + offset[2]) // cell) % 2).float()
        inside = (y / 0.8) ** 2 + (x / 0.65) ** 2 + (z / 1.5) ** 2 < 1
        return inside * (0.35 + 0.3 * checks)

    return blocks(seed, size, depth), checkerboard(seed, size, depth), checkerboard(seed, size, depth, cell=8)


def test_the_volumes_chapter8_made_before():
    old_blocks, old_checks, old_checks8 = _chapter8_volumes(0, 64, 16)      # SEED, SIZE, DEPTH of chapter 8
    assert torch.equal(data.blocks(0, 64, 16), old_blocks)
    assert torch.equal(data.checkerboard(0, 64, 16), old_checks)
    assert torch.equal(data.checkerboard(0, 64, 16, cell=8), old_checks8)


def test_real_ct_description_says_what_each_prior_saw():
    """The list chapters 5 and 6 open their real-CT section with: the priors' cards, read, not restated."""
    ct, phantom = dm.load_prior("ct64"), dm.load_prior("phantom64")
    card = book.prior_card(ct)
    text = book.real_ct_description([], 64, 8, ct, phantom)
    assert text.count("\n") == 1                                    # two lines: the two priors, no volume
    assert f"{card['images_seen']:,} images" in text and ", ".join(card["train_volumes"]) in text
    assert f"`{phantom.name}`" in text and "no real scan" in text


def test_tv_sweep_runs_each_distinct_setting_once_and_lam_zero_without_tv():
    from dmbir_edu import experiments

    p = experiments.protocol_of(experiments.REPORTED, seeds=data.VALIDATION_SEEDS, n_volumes=1, repeats=(0,), depth=4)
    knobs = {"lam": (0, 1, 4), "rho": (1,), "tv": ("z", "none")}
    rows = book.tv_sweep(p, knobs=knobs, n_steps=2)
    stands_for = {tuple(r["knobs"]): r for r in rows}
    assert len(rows) == 3                                   # lam 0 = TV none; lam 1 = rho 1 = TV z; lam 4
    assert {k for r in rows for k in r["knobs"]} == {(k, v) for k, vs in knobs.items() for v in vs}
    none = next(r for r in rows if ("lam", 0) in r["knobs"])
    assert none["row"] == "dmbir_no_tv" and none["kwargs"]["axes"] is None and ("tv", "none") in none["knobs"]
    assert len({tables.volume_key(r) for r in rows}) == len(rows)      # every run saved under its own key
    base = experiments.resolved_kwargs("sparse_view", 8, "diffusionmbir", p.size)
    assert stands_for[(("lam", 4),)]["kwargs"]["lam"] == pytest.approx(4 * base["lam"])
    assert stands_for[(("lam", 1), ("rho", 1), ("tv", "z"))]["row"] == "diffusionmbir"


def long_row(method, steps, repeat, psnr):
    """A saved long-run row: one volume, PSNR equal on the three planes."""
    return dict(task="limited_angle", setting=90, noise="noise-free", volume="v", repeat=repeat, method=method,
                kwargs={"n_steps": steps} if method != "admm_tv" else {}, seconds=1.0, flicker=0.5, dz_ratio=1.0,
                **{a: {"psnr": psnr, "ssim": 0.5} for a in dm.metrics.AXES})


def test_long_runs_read_saved_files_and_steps_cg_tv_separates_the_three_differences(tmp_path):
    # seed s: DiffusionMBIR 1000 steps 24 + s, 100 steps 22 + s; slice-wise 1 CG 1000 steps 23 + s,
    # 100 steps 21.5 + s; slice-wise 50 CG 1000 steps 20 + 3 s (its difference to 1 CG varies: -3, -1, +1,
    # mean -1, sd 2, standard error 2 / sqrt 3 = 1.15: inside the tie band of two standard errors)
    for s in (0, 1, 2):
        made = {1000: [long_row("admm_tv", None, s, 21), long_row("diffusionmbir", 1000, s, 24 + s),
                       long_row("slicewise", 1000, s, 20 + 3 * s), long_row("slicewise_cg1", 1000, s, 23 + s)],
                100: [long_row("diffusionmbir", 100, s, 22 + s), long_row("slicewise_cg1", 100, s, 21.5 + s)]}
        for n, rows in made.items():
            for r in rows:
                r["x"], r["x_hat"] = torch.zeros(2, 8, 8), torch.full((2, 8, 8), float(s))
            tables.save_volumes(rows, tmp_path / f"la90_{n}_seed{s}.pt")
            (tmp_path / f"la90_{n}_seed{s}.json").write_text(json.dumps(rows, default=str))
    runs = {1000: ["admm_tv", "diffusionmbir", "slicewise", "slicewise_cg1"], 100: ["diffusionmbir", "slicewise_cg1"]}
    rows = book.long_runs(tmp_path, "la90_", runs, "limited_angle", 90)
    assert len(rows) == 18 and {r["method"] for r in rows} == {
        "3D ADMM-TV", "DiffusionMBIR, 1000 steps", "DiffusionMBIR, 100 steps", "slice-wise (50 CG), 1000 steps",
        "slice-wise (1 CG), 1000 steps", "slice-wise (1 CG), 100 steps"}
    assert all(r["x_hat"].shape == (2, 8, 8) for r in rows)
    said = book.steps_cg_tv(rows)
    assert said == [
        "steps: DiffusionMBIR, 1000 steps minus DiffusionMBIR, 100 steps = +2.00 ± 0.00 dB (wins)",
        "steps: slice-wise (1 CG), 1000 steps minus slice-wise (1 CG), 100 steps = +1.50 ± 0.00 dB (wins)",
        "CG budget: slice-wise (50 CG), 1000 steps minus slice-wise (1 CG), 1000 steps = -1.00 ± 1.15 dB (ties)",
        "TV term: DiffusionMBIR, 1000 steps minus slice-wise (1 CG), 1000 steps = +1.00 ± 0.00 dB (wins)",
        "TV term: DiffusionMBIR, 100 steps minus slice-wise (1 CG), 100 steps = +0.50 ± 0.00 dB (wins)"]
    assert book.long_runs(tmp_path, "mri_x8_", runs, "mri", "uniform1d-x8") == []      # nothing saved: nothing read
    table = book.long_table(rows, ["3D ADMM-TV"], "caption").data
    assert table.loc["DiffusionMBIR, 1000 steps", "− 3D ADMM-TV"].startswith("+4.00 ± 0.58 wins")


def test_two_prior_rows_runs_each_prior_and_noise_and_sorts(monkeypatch):
    from dmbir_edu import experiments

    calls = []

    def fake_run(task, settings, methods, prior=None, source=None, noise=None, **kw):
        calls.append((prior.name, noise, tuple(methods)))
        return [dict(volume=v, setting=s, noise=experiments.noise_label(task, noise), method=m, seconds=1.0,
                     **{a: {"psnr": 20.0, "ssim": 0.5} for a in dm.metrics.AXES})
                for v in ("b", "a") for s in settings for m in methods]

    monkeypatch.setattr(experiments, "run", fake_run)
    real, phantom = type("P", (), {"name": "ct64"})(), type("P", (), {"name": "phantom64"})()
    rows = book.two_prior_rows("sparse_view", (8, 4), real, phantom, ["fbp", "slicewise", "dds"], contrast=("dds",))
    assert calls == [("ct64", "none", ("fbp", "slicewise", "dds")), ("ct64", "realistic", ("fbp", "dds")),
                     ("phantom64", "none", ("dds",)), ("phantom64", "realistic", ("dds",))]
    assert [r["prior"] for r in rows if r["method"] == "fbp"] == ["none"] * 8     # FBP: no prior
    keys = [(r["volume"], r["setting"], r["noise"], r["prior"]) for r in rows]
    assert keys[0] == ("b", 8, "noise-free", "none") and keys[-1] == ("a", 4, experiments.noise_label(
        "sparse_view", "realistic"), "phantom64")                  # volumes as run, then settings as given
    table = book.two_prior_table(rows, "views")
    assert table.index.names == ["volume", "views", "noise", "prior", "method"] and len(table) == len(rows)
    assert list(table.columns) == [f"{a} {m}" for a in dm.metrics.AXES for m in ("PSNR", "SSIM")] + ["seconds"]


def test_runs_dir_beside_the_page_or_fetched_from_the_release_tag(tmp_path, capsys):
    """In a clone, runs/<name> beside book/; a page opened alone gets a sparse checkout of that one
    folder at the release tag (here from a local repository that has the tag); without a reachable
    repository it says how to get the runs and returns the missing local path."""
    import subprocess

    clone = tmp_path / "clone"
    (clone / "runs" / "tv_sweep").mkdir(parents=True)
    (clone / "book").mkdir()
    assert book.runs_dir("tv_sweep", here=clone / "book") == clone / "runs" / "tv_sweep"
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    (repo / "runs" / "evidence").mkdir(parents=True)
    (repo / "runs" / "evidence" / "cell.json").write_text("[]")
    (repo / "runs" / "other").mkdir()
    (repo / "runs" / "other" / "big.pt").write_text("x")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "runs"], check=True)
    subprocess.run(git + ["tag", book.release_tag()], check=True)
    got = book.runs_dir("evidence", here=tmp_path / "alone", repository=f"file://{repo}", cache=tmp_path / "cache")
    assert (got / "cell.json").read_text() == "[]"
    assert not (got.parent / "other").exists()                        # only the folder asked for
    missing = book.runs_dir("evidence", here=tmp_path / "alone", repository=f"file://{tmp_path}/none",
                            cache=tmp_path / "cache2")
    assert not missing.exists() and "could not be fetched" in capsys.readouterr().out


def test_glue_returns_its_value_for_use_in_an_expression():
    assert book.glue("a_number_for_the_prose", 1.25) == 1.25


def test_slice_role_reads_the_prior_card():
    real = {"init": "phantom64", "modality": "ct", "train_volumes": ["lung1"], "validation_volumes": ["aorta"],
            "test_volumes": ["lung2"]}
    phantom = {"images_seen": 1}
    assert book.slice_role(phantom, (1, 2), 64) == "held-out phantoms of its family"
    assert book.slice_role(real, (1, 2), 64) == "phantoms (phantom64's family)"
    assert book.slice_role(real, ("aorta",), 64) == "its validation volume"
    assert book.slice_role(real, ("lung2",), 64) == "its test volume"
