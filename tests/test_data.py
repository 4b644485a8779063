"""The volumes: phantom family properties, held-out seeds, and the offline OOD volumes."""
import torch

from dmbir_edu import data


def test_phantoms_are_seeded_in_range_and_not_piecewise_constant():
    a, b = data.phantom(5, 32), data.phantom(5, 32)
    assert torch.equal(a, b) and a.shape == (32, 32, 32) and a.dtype == torch.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    inside = a[a > 0.05]
    assert inside.unique().numel() > 0.5 * inside.numel()          # smooth ramps and texture everywhere
    assert not torch.equal(data.phantom(6, 32), a)


def test_held_out_seeds_are_disjoint_from_training():
    held_out = set(data.TEST_SEEDS) | set(data.VALIDATION_SEEDS)
    assert not held_out & set(data.TRAIN_SEEDS) and not set(data.TEST_SEEDS) & set(data.VALIDATION_SEEDS)


def test_brain_and_shepp_logan_load_offline():
    brain = data.brain(32)                       # MNI152 template from inside the nilearn wheel
    assert brain.shape == (32, 32, 32) and float(brain.min()) == 0 and abs(float(brain.max()) - 1) < 1e-6
    assert brain.std() > 0.1
    sl = data.shepp_logan(16)
    assert sl.shape == (16, 16, 16) and abs(float(sl.max()) - 1) < 1e-6
