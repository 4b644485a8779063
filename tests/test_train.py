"""Training on real and on your own data (``python -m dmbir_edu.train --data ...``).

- augmentation: shape and range kept; with nothing drawn it is the identity or a left-right mirror;
  a 90 degree rotation moves a marked pixel where it should; the gain scales intensities;
- the real training slices come from the training volumes only, never validation or test ones;
- a folder of your own volumes (.npy, .nii.gz, .nrrd) trains, with a learning curve;
- a resumed real-data run is exact and its logs hold each step once; a resume with other settings,
  a missing folder and a folder without --modality are refused with a clear error;
- two runs with one seed give the same weights, and ``train`` is its steps: ``new_model`` then
  ``optimisation_step`` for k = 0, 1, ... gives the EMA weights ``train`` returns;
- every committed run (``runs/*/args.json``) still resumes: its settings give back its record.
"""
import json
import shutil
from dataclasses import fields, replace
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
import torch

from dmbir_edu import data, train

TINY = dict(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
            norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"))
NO_AUG = dict(max_rotation=0.0, max_scale=0.0, gain=0.0)


def test_augment_without_draws_is_identity_or_mirror():
    x = torch.rand(32, 16, 16)
    out = train.augment(x, torch.Generator().manual_seed(0), **NO_AUG)
    assert out.shape == x.shape
    for a, b in zip(out, x):
        assert torch.allclose(a, b, atol=1e-6) or torch.allclose(a, b.flip(-1), atol=1e-6)
    mirrored = sum(not torch.allclose(a, b, atol=1e-6) for a, b in zip(out, x))
    assert 0 < mirrored < 32                               # the left-right flip is drawn per slice
    up_down = train.augment(x, torch.Generator().manual_seed(0), **NO_AUG, vflip=True)
    assert any(torch.allclose(a, b.flip(-2), atol=1e-6) or torch.allclose(a, b.flip(-2, -1), atol=1e-6)
               for a, b in zip(up_down, x))


def test_augment_rotation_and_gain_known_answers():
    x = torch.zeros(64, 17, 17)
    x[:, 8, 12] = 1.0                                      # a point right of the centre
    out = train.augment(x, torch.Generator().manual_seed(1), max_rotation=90.0, max_scale=0.0, gain=0.0)
    assert out.min() >= 0 and out.max() <= 1
    yy, xx = torch.meshgrid(torch.arange(17.0), torch.arange(17.0), indexing="ij")
    for im in out:
        m = im.sum()
        cy, cx = (im * yy).sum() / m, (im * xx).sum() / m
        assert torch.hypot(cy - 8, cx - 8) == pytest.approx(4.0, abs=0.6)     # rotated about the centre
    g = torch.Generator().manual_seed(2)
    flat = torch.full((256, 8, 8), 0.5)
    gained = train.augment(flat, g, max_rotation=0.0, max_scale=0.0, gain=0.2)[:, 4, 4]
    assert gained.min() >= 0.5 * 0.8 - 1e-6 and gained.max() <= 0.5 * 1.2 + 1e-6
    assert gained.std() > 0.02                             # the gain is drawn, not fixed


def test_real_training_slices_come_from_training_volumes_only():
    for modality in ("ct", "mr"):
        split = data.REAL_SPLITS[modality]
        assert not set(split["train"]) & (set(split["validation"]) | set(split["test"]))
        slices, names = train.training_slices(modality, 16)
        assert names == list(split["train"])
        expected = torch.cat([data.axial_slices(n, 16) for n in names])
        expected = expected[expected.amax((-2, -1)) > 0.05]
        assert torch.equal(slices, expected)
        assert slices.shape[1:] == (16, 16) and 0 <= slices.min() and slices.max() <= 1


def _own_volumes(folder):
    """Three small volumes in the three formats: a bright block in the upper (superior) half."""
    folder.mkdir()
    v = np.zeros((12, 20, 20), np.float32)
    v[6:, 5:15, 5:15] = 1.0
    np.save(folder / "a.npy", v)                                                        # already in [0, 1]
    hu = v * 1000.0 - 1000.0 + 800.0 * (v > 0)                                          # air -1000, block +800 HU
    # NIfTI (x, y, z) with an identity (RAS) affine: z increases superiorly
    nib.save(nib.Nifti1Image(np.transpose(hu, (2, 1, 0)), np.eye(4)), folder / "b.nii.gz")
    nrrd.write(str(folder / "c.nrrd"), np.transpose(hu, (2, 1, 0)),
               {"space": "left-posterior-superior", "space directions": np.eye(3), "space origin": np.zeros(3)})
    (folder / "notes.txt").write_text("not a volume")
    return v


def test_read_volume_file_formats_agree(tmp_path):
    _own_volumes(tmp_path / "mine")
    out = {f: data.read_volume_file(tmp_path / "mine" / f, "ct", size=20) for f in ("a.npy", "b.nii.gz", "c.nrrd")}
    for f, x in out.items():
        assert x.shape == (12, 20, 20), f
        assert x[:6].max() < 0.05 and x[6:].max() > 0.85, f           # superior half bright, in every format
    with pytest.raises(ValueError, match="not a volume file"):
        data.read_volume_file(tmp_path / "mine" / "notes.txt", "ct")
    with pytest.raises(ValueError, match="modality"):
        data.read_volume_file(tmp_path / "mine" / "a.npy", "pet")


def test_training_on_your_own_folder_with_a_learning_curve(tmp_path):
    _own_volumes(tmp_path / "mine")
    with pytest.raises(ValueError, match="--modality"):
        train.train(tmp_path / "r0", 2, source=str(tmp_path / "mine"), config=TINY, progress=False)
    with pytest.raises(ValueError, match="folder of volumes"):
        train.train(tmp_path / "r0", 2, source=str(tmp_path / "nowhere"), config=TINY, progress=False)
    run = tmp_path / "run"
    train.train(run, 2, source=str(tmp_path / "mine"), modality="ct", config=TINY, batch_size=4, seed=1,
                eval_every=100, progress=False)
    args = json.loads((run / "args.json").read_text())
    assert args["train_volumes"] == ["a.npy", "b.nii.gz", "c.nrrd"]
    assert args["validation_volumes"] == list(data.real_names("ct", "validation"))
    curve = (run / "curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,images_seen,psnr_sigma_") and [r.split(",")[0] for r in curve[1:]] == ["0", "2"]
    assert all(np.isfinite(float(c)) for r in curve[1:] for c in r.split(",")[2:])
    best = torch.load(run / "best.pt", weights_only=True)          # early stopping: the best point so far
    assert best["step"] == 2
    assert best["ema"].keys() == torch.load(run / "checkpoint.pt", weights_only=True)["ema"].keys()


def _run(run_dir, steps, **kw):
    return train.train(run_dir, steps, source="ct", config=TINY, batch_size=4, seed=2, phantom_fraction=0.5,
                       progress=False, checkpoint_every=2, eval_every=2, **kw)


def test_real_data_resume_is_exact_and_logs_each_step_once(tmp_path):
    _run(tmp_path / "a", 2)
    resumed = _run(tmp_path / "a", 4).state_dict()
    straight = _run(tmp_path / "b", 4).state_dict()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    for run in ("a", "b"):
        steps = [r.split(",")[0] for r in (tmp_path / run / "curve.csv").read_text().splitlines()[1:]]
        assert steps == ["0", "2", "4"], (run, steps)
    with pytest.raises(ValueError, match="other settings"):
        train.train(tmp_path / "a", 6, source="ct", config=TINY, batch_size=8, seed=2, progress=False)


def test_one_seed_gives_one_run_and_train_is_its_steps(tmp_path):
    s = train.TrainingSettings(config=TINY, batch_size=4, seed=3)
    run = lambda name, settings: train.train(tmp_path / name, 3, settings, eval_every=0, progress=False).state_dict()
    a, b, other = run("a", s), run("b", s), run("c", replace(s, seed=4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)
    prior, ema, opt = train.new_model(s, "cpu")
    for k in range(3):
        train.optimisation_step(prior, ema, opt, k, s, None)
    assert all(torch.equal(ema.state_dict()[k], a[k]) for k in a)


RUNS = sorted((Path(__file__).parents[1] / "runs").glob("*/args.json"))


SPLIT_KEYS = ("train_volumes", "train_slices", "validation_volumes")   # what --data ct / mr means today


@pytest.mark.parametrize("args_json", RUNS, ids=[p.parent.name for p in RUNS])
def test_committed_runs_resume_with_their_own_settings(args_json, tmp_path):
    """Every committed run's settings are reproduced by today's code. A run made on an earlier
    split of the real volumes (``data.REAL_SPLITS``; e.g. ct64 before cxr and aorta) keeps its own
    record, and resuming it on today's split is refused rather than silently mixing the two."""
    old = json.loads(args_json.read_text())
    missing = [n for n in old.get("train_volumes") or [] if n in data.REAL and not data.available(n)]
    if missing:
        pytest.skip(f"{', '.join(missing)}: {data.unavailable_reason(missing[0])}")
    s = train.TrainingSettings(**{f.name: old[f.name] for f in fields(train.TrainingSettings) if f.name in old})
    record = train.run_record(s, old["steps"], *train.training_slices(s.source, s.config["sample_size"], s.modality))
    earlier_split = s.source in data.REAL_SPLITS and any(
        json.dumps(old.get(k)) != json.dumps(record.get(k)) for k in SPLIT_KEYS)
    keys = [k for k in old if not (earlier_split and k in SPLIT_KEYS)]
    assert {k: json.dumps(old[k]) for k in keys} == {k: json.dumps(record.get(k)) for k in keys}
    if earlier_split:
        (tmp_path / "run").mkdir()
        shutil.copy(args_json, tmp_path / "run" / "args.json")
        with pytest.raises(ValueError, match="other settings"):
            train.write_record(tmp_path / "run", record)


@pytest.mark.parametrize("bad, match", [(dict(plane="oblique"), "plane must be"), (dict(slab=2), "odd number"),
                                        (dict(source="ct", slab=3), "phantoms only")])
def test_bad_settings_are_refused_before_a_run_folder_is_made(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        train.train(tmp_path / "run", 2, config=TINY, progress=False, **bad)
    assert not (tmp_path / "run").exists()
