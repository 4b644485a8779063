"""The shipped prior and its training command.

- the weights load offline and match the sha256 in their card; a corrupted copy is refused;
- the card records how the weights were made;
- the prior beats TV denoising (weight tuned on validation slices) on held-out slices;
- training is deterministic given a seed, and resuming from a checkpoint is exact;
- D(x; sigma) is close to the identity at a tiny noise level.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import dmbir_edu as dm
import dmbir_edu.prior
from dmbir_edu import data, prior_quality
from dmbir_edu.prior import WEIGHTS_DIR, Prior, sha256
from dmbir_edu.train import train

NAME = "phantom64"
CARD = json.loads((WEIGHTS_DIR / f"{NAME}.json").read_text())

# A tiny UNet on 16 x 16 slices: enough to exercise every line of the training loop in a second.
TINY = dict(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
            norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"))


@pytest.fixture(scope="module")
def prior():
    return dm.load_prior(NAME)


def test_shipped_prior_is_listed():
    assert NAME in dm.available_priors()


def test_weights_load_offline():
    # A fresh interpreter with the Hugging Face hub offline and every socket connection refused.
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import dmbir_edu as dm\n"
        f"p = dm.load_prior({NAME!r})\n"
        "print(p.name, p.image_size)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [NAME, "64"]


def test_weights_match_the_card():
    assert sha256(WEIGHTS_DIR / f"{NAME}.safetensors") == CARD["sha256"]


def test_a_corrupted_copy_is_refused(tmp_path, monkeypatch):
    for suffix in (".json", ".safetensors"):
        shutil.copyfile(WEIGHTS_DIR / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    monkeypatch.setattr(dmbir_edu.prior, "WEIGHTS_DIR", tmp_path)
    dm.load_prior(NAME)                                   # the intact copy loads
    weights = tmp_path / f"{NAME}.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-100] ^= 0xFF                                    # flip one byte of the last tensor
    weights.write_bytes(bytes(blob))
    with pytest.raises(RuntimeError, match="sha256"):
        dm.load_prior(NAME)


def test_card_records_how_the_weights_were_made():
    for field in ("training_command", "steps", "data", "sha256", "quality"):
        assert field in CARD, f"card {NAME}.json has no {field!r}"
    assert CARD["training_command"].startswith("python -m dmbir_edu.train")
    assert CARD["steps"] > 0
    assert CARD["images_seen"] == CARD["steps"] * CARD["batch_size"]
    assert isinstance(CARD["quality"], dict)
    assert len(CARD["sha256"]) == 64
    # the architecture in the card is the one in the file
    assert sum(p.numel() for p in Prior(CARD["unet"]).parameters()) == CARD["parameters"]


def test_prior_beats_tuned_tv_denoising_on_held_out_slices(prior):
    # 4 slices of each TEST_SEEDS volume; the TV weight is tuned on VALIDATION_SEEDS slices
    tab = prior_quality.denoising_table(prior, sigmas=(0.1,), per_volume=4)
    row = tab[0.1]
    print(prior_quality.format_table(tab))
    assert row["noisy"] < row["tv"] < row["prior"]


def test_denoiser_is_nearly_the_identity_at_tiny_sigma(prior):
    x = data.phantom(data.TEST_SEEDS[0], prior.image_size)[::16]   # 4 clean held-out slices
    d = prior.denoise(x, 1e-3)
    assert d.shape == x.shape and d.dtype == x.dtype
    assert (d - x).abs().mean() < 1e-3
    assert (d - x).abs().max() < 0.02


def run(run_dir, steps):
    return train(run_dir, steps, config=TINY, batch_size=4, seed=3, progress=False)


def checkpoint(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_is_deterministic_given_a_seed(tmp_path):
    ema_a = run(tmp_path / "a", 2)
    ema_b = run(tmp_path / "b", 2)
    assert_same_state(ema_a.state_dict(), ema_b.state_dict())
    assert_same_state(checkpoint(tmp_path / "a")["model"], checkpoint(tmp_path / "b")["model"])


def test_resuming_is_exact(tmp_path):
    run(tmp_path / "resumed", 2)
    ema_resumed = run(tmp_path / "resumed", 4)            # picks up the step-2 checkpoint
    ema_straight = run(tmp_path / "straight", 4)
    resumed, straight = checkpoint(tmp_path / "resumed"), checkpoint(tmp_path / "straight")
    assert resumed["step"] == straight["step"] == 4
    assert_same_state(ema_resumed.state_dict(), ema_straight.state_dict())
    assert_same_state(resumed["model"], straight["model"])
    assert_same_state(resumed["ema"], straight["ema"])
    # ... and the weights did move between step 2 and step 4 (so the comparison means something)
    two = run(tmp_path / "two", 2).state_dict()
    assert any(not torch.equal(two[k], ema_straight.state_dict()[k]) for k in two)
